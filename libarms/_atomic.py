"""Atomic file writes: temp file in the same directory, fsync, rename, fsync the directory.

The one implementation the library and armsd use (the state cache, the pid file, armsd's module
store, the configuration store and the time floor).
"""

from __future__ import annotations

import itertools
import os

_seq = itertools.count()


def fsync_dir(path: str) -> None:
    """Flush a directory entry change (rename, link, unlink) to the disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def write_atomic(path: str, data: bytes, mode: int = 0o600, sync_dir: bool = True) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves either the old or the new file.

    The temporary is ``.NAME.tmp.PID.N`` beside it (an O_EXCL name; no ``tempfile`` import: it
    is heavy for a small daemon); ``sync_dir`` False leaves the directory flush to the caller
    (the file is old or new either way; the flush only makes the new one survive a power cut).
    """
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, ".%s.tmp.%d.%d" % (os.path.basename(path), os.getpid(),
                                                      next(_seq)))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)                  # whatever the umask
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink_quietly(tmp)
        raise
    os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    if sync_dir:
        fsync_dir(directory)
