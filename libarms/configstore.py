"""Candidate / running / backup copies of pushed module configs, kept atomically on disk.

A configure push stores candidates, the commit promotes them (running -> backup, candidate ->
running), a rollback restores backup -> running. Every file is written temp + fsync + rename
and the directory is fsynced, so a crash at any point leaves the old or the new copy of a
module's config, never half of one. Without a directory the store lives in memory.
"""

from __future__ import annotations

import os
import re
import threading

from ._atomic import write_atomic

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing stays unloaded at run time (footprint)
    from typing import Optional

KINDS = ("candidate", "running", "backup")
_NAME = re.compile(r"\A(\d{1,10})\.cfg\Z")


class ConfigStore:
    def __init__(self, directory: Optional[str] = None):
        self.directory = directory
        self._mem: dict[str, dict[int, bytes]] = {k: {} for k in KINDS}
        self._lock = threading.Lock()
        if directory:
            for k in KINDS:
                os.makedirs(os.path.join(directory, k), exist_ok=True)

    def _path(self, kind: str, module_id: int) -> str:
        return os.path.join(self.directory, kind, f"{int(module_id)}.cfg")  # type: ignore[arg-type]

    def get(self, kind: str, module_id: int) -> Optional[bytes]:
        if not self.directory:
            return self._mem[kind].get(module_id)
        try:
            with open(self._path(kind, module_id), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def modules(self, kind: str) -> list[int]:
        if not self.directory:
            return sorted(self._mem[kind])
        out = []
        for name in os.listdir(os.path.join(self.directory, kind)):
            m = _NAME.match(name)
            if m:
                out.append(int(m.group(1)))
        return sorted(out)

    def put(self, kind: str, module_id: int, data: bytes) -> None:
        with self._lock:
            if not self.directory:
                self._mem[kind][module_id] = bytes(data)
            else:
                write_atomic(self._path(kind, module_id), bytes(data), 0o644)

    def discard(self, kind: str, module_id: int) -> None:
        with self._lock:
            if not self.directory:
                self._mem[kind].pop(module_id, None)
                return
            try:
                os.unlink(self._path(kind, module_id))
            except FileNotFoundError:
                pass

    def clear(self, kind: str) -> None:
        for mid in self.modules(kind):
            self.discard(kind, mid)

    def commit(self) -> None:
        """Candidates become running; what was running becomes the backup."""
        for mid in self.modules("candidate"):
            data = self.get("candidate", mid)
            cur = self.get("running", mid)
            if cur is not None:
                self.put("backup", mid, cur)
            else:
                self.discard("backup", mid)
            self.put("running", mid, data or b"")
            self.discard("candidate", mid)

    def revert(self) -> None:
        """Backups become running again (modules without a backup keep their running copy)."""
        for mid in self.modules("backup"):
            self.put("running", mid, self.get("backup", mid) or b"")
