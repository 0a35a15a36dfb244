"""Files armsd keeps across restarts, written so that a crash leaves the old or the new content.

Every write goes to a temporary file in the same directory, is flushed to the disk, renamed over
the target and the directory is flushed too (so the rename itself survives a power cut). A
reader therefore sees either the previous file or the complete new one, never a half-written
one, whatever moment the process is killed at.

The state cache is libarms' LS-skip blob (``Agent.dump_state()``): armsd stores it after every
successful pull and when it stops, and hands it back with ``Agent.restore_state()`` on start.
"""

from __future__ import annotations

import logging
import os
import threading

from .._atomic import _unlink_quietly, fsync_dir, write_atomic  # noqa: F401 (re-exported)

log = logging.getLogger("libarms.daemon.statefile")

#: Refuse to load a state cache larger than this (the libarms 5.33 blob is 29456 bytes).
MAX_STATE_SIZE = 1 << 20


# one implementation for the library and the daemon (the names stay: modules and tests use them)
atomic_write = write_atomic


def remove_stale_temporaries(directory: str) -> int:
    """Delete ``.*.tmp.*`` files a killed writer left behind; return how many."""
    removed = 0
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return 0
    for name in names:
        if name.startswith(".") and ".tmp." in name:
            _unlink_quietly(os.path.join(directory, name))
            removed += 1
    return removed


class StateCache:
    """The LS-skip state file (``path-state-cache``)."""

    def __init__(self, path: str):
        self.path = path
        self._writer: threading.Thread | None = None

    def load(self) -> bytes | None:
        """The saved blob, or None when there is none (or it cannot be read: logged)."""
        try:
            with open(self.path, "rb") as f:
                data = f.read(MAX_STATE_SIZE + 1)
        except FileNotFoundError:
            return None
        except OSError as e:
            log.warning("cannot read state cache %s: %s; pulling from the LS", self.path, e)
            return None
        if len(data) > MAX_STATE_SIZE:
            log.warning("state cache %s is larger than %d bytes; ignored", self.path,
                        MAX_STATE_SIZE)
            return None
        if not data:
            return None
        return data

    def save(self, data: bytes) -> bool:
        """Write the blob atomically; errors are logged and reported as False (never raised).
        A write started by :meth:`save_in_background` is finished first: blobs land in order."""
        if not self.wait():
            log.error("cannot save state cache %s: the previous write still hangs", self.path)
            return False
        return self._save(data)

    def save_in_background(self, data: bytes, before=None) -> None:
        """Write the blob on a thread of its own (its fsyncs off the caller's path), after
        calling ``before()`` there if given; the next :meth:`save` or :meth:`wait` waits for it.
        Logs "state saved to ..." once durable."""
        self.wait()

        def work():
            if before is not None:
                before()
            if self._save(data):
                log.info("state saved to %s", self.path)

        self._writer = threading.Thread(target=work, name="armsd-state-save", daemon=True)
        self._writer.start()

    def wait(self, timeout: float = 30.0) -> bool:
        """Wait (bounded) for a background write; False if it is still running."""
        th = self._writer
        if th is not None:
            th.join(timeout)
            if th.is_alive():
                return False
            self._writer = None
        return True

    def _save(self, data: bytes) -> bool:
        try:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            atomic_write(self.path, data, 0o600)
        except OSError as e:
            log.error("cannot save state cache %s: %s", self.path, e)
            return False
        log.debug("state cache saved to %s (%d bytes)", self.path, len(data))
        return True

    def discard(self) -> None:
        _unlink_quietly(self.path)


class PidFile:
    """``path-pid`` / ``--pidfile``: decimal pid and a newline, removed at exit."""

    def __init__(self, path: str):
        self.path = path
        self._written = False

    def write(self, force: bool = False) -> None:
        """Write our pid; refuse (ConfigError) if it names another live process, unless
        ``force`` (``-w``: the daemon replaces the foreground process it forked from)."""
        old = self._read_pid()
        if not force and old and old != os.getpid() and _pid_alive(old):
            from ..errors import ConfigError
            raise ConfigError(f"pid file {self.path} names running process {old}: "
                              "another armsd uses it (give each instance its own path-pid)")
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        atomic_write(self.path, b"%d\n" % os.getpid(), 0o644)
        self._written = True

    def remove(self) -> None:
        if self._written and self._read_pid() == os.getpid():
            _unlink_quietly(self.path)
        self._written = False

    def _read_pid(self) -> int | None:
        try:
            with open(self.path, "rb") as f:
                return int(f.read(32).strip() or b"0")
        except (OSError, ValueError):
            return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
