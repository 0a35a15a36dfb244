"""Fixtures for the cross area: the agent on a foreign CPU under qemu-user.

``cross_stage(arch)`` builds (once per session) the sysroot, the cross-compiled C core and the
staging tree with ``scripts/cross/build.sh``; ``ForeignPython`` runs Debian's Python of that
sysroot under ``qemu-arm`` / ``qemu-mipsel`` with the staging tree on its path, either to
completion (``run``) or as a long-lived device (``spawn`` → :class:`Device`, whose JSON events
are collected by a reader thread and awaited with bounded timeouts).
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import pytest

REPO = Path(__file__).resolve().parents[1]
ARCHES = {"armhf": ("qemu-arm", "arm-linux-gnueabihf-gcc"),
          "mipsel": ("qemu-mipsel", "mipsel-linux-gnu-gcc")}
DEVICE_AGENT = REPO / "scripts" / "cross" / "device_agent.py"
BUILD_TIMEOUT = 900  # first run downloads ~25 .debs per architecture


@dataclass(frozen=True)
class ForeignPython:
    arch: str
    qemu: str
    sysroot: Path
    stage: Path

    def argv(self, *args: str) -> list[str]:
        return [self.qemu, "-L", str(self.sysroot), str(self.sysroot / "usr/bin/python3.11"),
                *args]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        env.update(PYTHONPATH=str(self.stage), PYTHONDONTWRITEBYTECODE="1",
                   PYTHONNOUSERSITE="1", PYTHONUNBUFFERED="1")
        return env

    def run(self, code: str, *, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run ``python -c code`` on the foreign CPU; fail the test with its stderr if it fails."""
        r = subprocess.run(self.argv("-c", code), env=self.env(), cwd=cwd, capture_output=True,
                           text=True, timeout=timeout)
        if r.returncode != 0:
            pytest.fail(f"{self.arch} python failed ({r.returncode}):\n{r.stderr[-4000:]}")
        return r

    def spawn(self, device_conf: dict, *, cwd: Path) -> "Device":
        conf_path = cwd / f"device-{self.arch}.json"
        conf_path.write_text(json.dumps(device_conf))
        proc = subprocess.Popen(self.argv(str(DEVICE_AGENT), str(conf_path)), env=self.env(),
                                cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        return Device(proc)


class Device:
    """The device program (scripts/cross/device_agent.py) running under qemu."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.events: list[dict] = []
        self._q: "queue.Queue[Optional[dict]]" = queue.Queue()
        self._stderr: list[str] = []
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                ev = {"event": "noise", "line": line.rstrip()}
            self._q.put(ev)
        self._q.put(None)

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self._stderr.append(line)
            del self._stderr[:-200]

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def wait_event(self, pred: Callable[[dict], bool], timeout: float, what: str) -> dict:
        """The first event (already seen or new) matching ``pred``, within ``timeout`` s."""
        for ev in self.events:
            if pred(ev):
                return ev
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                ev = self._q.get(timeout=left)
            except queue.Empty:
                break
            if ev is None:
                self._q.put(None)
                break
            self.events.append(ev)
            if pred(ev):
                return ev
        pytest.fail(f"device: no {what} within {timeout} s; events: "
                    f"{[e.get('event') + ':' + str(e.get('new', '')) for e in self.events]}\n"
                    f"stderr:\n{self.stderr[-3000:]}")

    def state(self, name: str, timeout: float) -> dict:
        return self.wait_event(lambda e: e["event"] == "state" and e["new"] == name, timeout,
                               f"state {name}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


_built: dict[str, ForeignPython] = {}


def cross_stage(arch: str) -> ForeignPython:
    """Build (once per session) and return the foreign Python for ``arch``."""
    if arch in _built:
        return _built[arch]
    qemu, cc = ARCHES[arch]
    for tool in (qemu, cc, "dpkg", "apt-get"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (scripts/bootstrap.sh installs it)")
    r = subprocess.run(["bash", str(REPO / "scripts/cross/build.sh"), arch], cwd=REPO,
                       capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    if r.returncode != 0:
        pytest.fail(f"scripts/cross/build.sh {arch} failed:\n{r.stderr[-4000:]}")
    stage = Path(r.stdout.strip().splitlines()[-1])
    info = dict(line.split("=", 1) for line in (stage / "STAGE-INFO").read_text().splitlines())
    sysroot = Path(info["sysroot"])
    _built[arch] = ForeignPython(arch, qemu, sysroot, stage)
    return _built[arch]


@pytest.fixture(params=sorted(ARCHES), scope="session")
def foreign(request) -> ForeignPython:
    return cross_stage(request.param)

