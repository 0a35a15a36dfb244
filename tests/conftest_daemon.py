"""Fixtures for the armsd tests: hook scripts that record how they were called."""

from __future__ import annotations

import os
import stat
import textwrap

import pytest

DISTID = "0001-1234-5678-9ABC-DEF0-1122-3344-5566"


class Hooks:
    """Writes small /bin/sh hooks into a directory; each appends one line per call to calls.log:
    ``<hook name> [arg1][arg2]... env=<ARMS_DISTRIBUTION_ID>``."""

    def __init__(self, directory):
        self.dir = str(directory)
        self.log = os.path.join(self.dir, "calls.log")

    def make(self, name: str, body: str = "exit 0") -> str:
        path = os.path.join(self.dir, name)
        # One printf = one write(2) to an O_APPEND file: lines of hooks that run at the same
        # time (the state hook has a thread of its own) never interleave.
        script = "#!/bin/sh\n" \
                 f"_l='{name} '; for a in \"$@\"; do _l=\"$_l\"$(printf '[%s]' \"$a\"); done\n" \
                 f"printf '%s env=%s\\n' \"$_l\" \"$ARMS_DISTRIBUTION_ID\" >> '{self.log}'\n" \
                 + textwrap.dedent(body) + "\n"
        with open(path, "w") as f:
            f.write(script)
        os.chmod(path, stat.S_IRWXU)
        return path

    def calls(self, name: str | None = None) -> list:
        try:
            with open(self.log) as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return []
        if name is None:
            return lines
        return [ln[len(name) + 1:] for ln in lines if ln.startswith(name + " ")]


@pytest.fixture
def hooks(tmp_path):
    d = tmp_path / "hooks"
    d.mkdir()
    return Hooks(d)


class RecordingHeartbeat:
    """Records the set_* calls made on it, in order (the agent's heartbeat object has the same
    setters; this one lets a test read back what a collector set)."""

    NAMES = ("cpu_usage", "cpu_detail_usage", "mem_usage", "disk_usage", "traffic_count",
             "traffic_rate", "radiowave")

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        if name.startswith("set_") and name[4:] in self.NAMES:
            return lambda *a: self.calls.append((name[4:],) + a)
        raise AttributeError(name)

    def by_name(self, name):
        return [c[1:] for c in self.calls if c[0] == name]


class Armsd:
    """armsd as a real subprocess; its log lines (stderr) are collected by a reader thread so a
    test can wait for one with a bounded timeout."""

    def __init__(self, conf_path: str, *extra: str, env=None):
        import subprocess
        import sys
        import threading
        self.lines: list = []
        self._eof = False
        self._cv = threading.Condition()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "libarms.daemon.main", "-f", conf_path, *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True, env=env)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stderr:
            with self._cv:
                self.lines.append(line.rstrip("\n"))
                self._cv.notify_all()
        with self._cv:
            self._eof = True
            self._cv.notify_all()

    def mark(self) -> int:
        """Position in the log; pass it as ``start`` to wait for lines logged after now."""
        with self._cv:
            return len(self.lines)

    def wait_for(self, text: str, timeout: float = 60.0, count: int = 1, start: int = 0) -> str:
        """The ``count``-th log line from ``start`` on containing ``text``; waits (bounded)."""
        import time
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                hits = [ln for ln in self.lines[start:] if text in ln]
                if len(hits) >= count:
                    return hits[count - 1]
                if self._eof:
                    raise AssertionError(f"armsd exited ({self.proc.wait()}) before logging "
                                         f"{text!r}; log:\n" + "\n".join(self.lines[-40:]))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"armsd did not log {text!r} within {timeout} s; log:\n"
                                         + "\n".join(self.lines[-40:]))
                self._cv.wait(left)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 60.0) -> int:
        rc = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return rc

    def stop(self):
        import signal as _s
        if self.proc.poll() is None:
            self.proc.send_signal(_s.SIGKILL)
        self.wait()


def run_until(conf_path: str, text: str, *extra: str, timeout: float = 60.0) -> Armsd:
    """Start armsd, wait for ``text`` in its log, then SIGTERM it and wait for its end; returns
    the finished process (its ``lines`` stay readable)."""
    import signal as _s
    d = Armsd(conf_path, *extra)
    try:
        d.wait_for(text, timeout)
    finally:
        d.signal(_s.SIGTERM)
        d.wait(timeout)
        d.stop()
    return d


def make_root_ca(directory) -> str:
    """A throw-away self-signed CA named like the ARMS Root CA; returns the PEM path."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ARMS Root CA (test)")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    path = os.path.join(str(directory), "root-ca.pem")
    with open(path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return path


def closed_port() -> int:
    """A loopback TCP port nobody listens on (connections are refused)."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def write_conf(path, **keys) -> str:
    """Write an armsd.conf; keyword names use '_' for '-'."""
    with open(path, "w") as f:
        for k, v in keys.items():
            f.write(f"{k.replace('_', '-')}: {v}\n")
    return str(path)
