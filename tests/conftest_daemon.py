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
        script = "#!/bin/sh\n" \
                 f"{{ printf '%s ' '{name}'; for a in \"$@\"; do printf '[%s]' \"$a\"; done; " \
                 f"printf ' env=%s\\n' \"$ARMS_DISTRIBUTION_ID\"; }} >> '{self.log}'\n" \
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
