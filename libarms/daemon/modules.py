"""Module config files: running / candidate / backup / startup, each swapped atomically.

Layout under the work directory (``path-work-dir``, default ``/var/lib/armsd``; armsd 0.9.0
used ``/tmp/armsd.<pid>`` and deleted it at exit, we keep it so that the applied config survives
a restart)::

    running-config/<id>     the config in force (what script-start / script-reconfig applied)
    candidate-config/<id>   a pushed config waiting for its commit
    backup-config/<id>      the config before the last commit (what a rollback restores)
    startup-config/<id>     the config the last pull delivered
    tmp/<n>                 request/result files and configs being written (mode 0600)
    modules.json            module id -> version and info text

Every change of a file is a rename (or a hard link renamed into place) of a complete, fsynced
file, so a SIGKILL or a power cut at any moment leaves each of these files either old or new,
never half written. ``tmp/`` is emptied on start.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading

from .statefile import atomic_write, fsync_dir, remove_stale_temporaries

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing stays unloaded at run time (footprint)
    from typing import Optional

log = logging.getLogger("libarms.daemon.modules")

KINDS = ("running", "candidate", "backup", "startup")
#: Largest module config armsd accepts (a pull or push config bigger than this is refused).
MAX_CONFIG_SIZE = 8 * 1024 * 1024

#: Work directories whose lock this process holds: realpath -> fd.
_HELD_LOCKS: dict = {}


class ModuleStore:
    def __init__(self, base: str):
        self.base = os.path.abspath(base)
        self.tmpdir = os.path.join(self.base, "tmp")
        self._counter = itertools.count(1)
        self.meta: dict = {}     # id (int) -> {"version": str, "info": str}

    # -- set-up ------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Create the directories, take the work directory's lock (one armsd per directory)
        and drop what a killed armsd left in tmp/."""
        for d in [self.base] + [self._dir(k) for k in KINDS]:
            os.makedirs(d, mode=0o755, exist_ok=True)
        os.makedirs(self.tmpdir, mode=0o700, exist_ok=True)   # request/result files
        self._lock()
        left = 0
        for name in os.listdir(self.tmpdir):
            try:
                os.unlink(os.path.join(self.tmpdir, name))
                left += 1
            except OSError:
                pass
        for d in [self.base] + [self._dir(k) for k in KINDS]:
            left += remove_stale_temporaries(d)
        # A candidate lives only inside one configure push: one left over belongs to a push
        # that never committed (armsd was killed), and must not be applied by the next one.
        for name in os.listdir(self._dir("candidate")):
            self.discard(os.path.join(self._dir("candidate"), name))
            left += 1
        if left:
            log.info("removed %d temporary file(s) left by an interrupted run", left)
        self.meta = self._load_meta()

    def _lock(self) -> None:
        import fcntl
        key = os.path.realpath(self.base)
        if key in _HELD_LOCKS:           # this process holds it already
            return
        path = os.path.join(self.base, ".lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise OSError(f"in use by another armsd (pid {owner}); give each instance its "
                          "own path-work-dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, b"%d\n" % os.getpid())
        _HELD_LOCKS[key] = fd        # held (and released by the kernel) for the process life

    def _dir(self, kind: str) -> str:
        return os.path.join(self.base, f"{kind}-config")

    def path(self, kind: str, module_id: int) -> str:
        return os.path.join(self._dir(kind), str(int(module_id)))

    def exists(self, kind: str, module_id: int) -> bool:
        return os.path.exists(self.path(kind, module_id))

    # -- temporary files ---------------------------------------------------------------------

    def new_tmp(self, data: bytes = b"") -> str:
        """A fresh ``tmp/<n>`` (mode 0600) holding ``data``, flushed to the disk."""
        for _ in range(1000):
            p = os.path.join(self.tmpdir, str(next(self._counter)))
            try:
                fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                continue
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            return p
        raise OSError(f"cannot create a temporary file in {self.tmpdir}")

    @staticmethod
    def discard(path: Optional[str]) -> None:
        if path:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    # -- atomic swaps ------------------------------------------------------------------------

    def install(self, tmp_path: str, kind: str, module_id: int) -> None:
        """Move a complete tmp file into ``<kind>-config/<id>`` (one rename)."""
        os.replace(tmp_path, self.path(kind, module_id))
        fsync_dir(self._dir(kind))

    def copy(self, src_kind: str, dst_kind: str, module_id: int) -> bool:
        """Make ``dst`` the same file as ``src`` (hard link under a temp name, then rename)."""
        src = self.path(src_kind, module_id)
        if not os.path.exists(src):
            return False
        tmp = os.path.join(self._dir(dst_kind),
                           f".{module_id}.tmp.{os.getpid()}.{threading.get_ident()}")
        self.discard(tmp)
        os.link(src, tmp)
        os.replace(tmp, self.path(dst_kind, module_id))
        fsync_dir(self._dir(dst_kind))
        return True

    def remove(self, module_id: int) -> None:
        for kind in KINDS:
            self.discard(self.path(kind, module_id))
        if self.meta.pop(int(module_id), None) is not None:
            self.save_meta()

    def read(self, kind: str, module_id: int, limit: int = MAX_CONFIG_SIZE) -> bytes:
        with open(self.path(kind, module_id), "rb") as f:
            return f.read(limit)

    # -- module list -------------------------------------------------------------------------

    def set_meta(self, module_id: int, version: str, info: str) -> None:
        self.meta[int(module_id)] = {"version": version, "info": info}
        self.save_meta()

    def save_meta(self) -> None:
        data = json.dumps({str(k): v for k, v in sorted(self.meta.items())}, indent=1)
        atomic_write(os.path.join(self.base, "modules.json"), data.encode() + b"\n", 0o644)

    def _load_meta(self) -> dict:
        p = os.path.join(self.base, "modules.json")
        try:
            with open(p, "rb") as f:
                raw = json.loads(f.read(1 << 20))
            return {int(k): {"version": str(v.get("version", "")), "info": str(v.get("info", ""))}
                    for k, v in raw.items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, AttributeError) as e:
            log.warning("module list %s unreadable (%s); starting with none", p, e)
            return {}

    def module_ids(self) -> list:
        ids = set(self.meta)
        try:
            ids.update(int(n) for n in os.listdir(self._dir("running")) if n.isdigit())
        except OSError:
            pass
        return sorted(ids)
