"""Running hook scripts: the executables armsd maps libarms callbacks onto.

Contract (``spec/arms-agent.md`` §5.4, kept by this runner for every hook):

* The hook is executed directly (no shell) with exactly the documented arguments; its
  environment is armsd's plus ``ARMS_DISTRIBUTION_ID=<distribution id>``, and (ours)
  ``ARMSD_HOOK=<script key>`` and ``ARMSD_WORK_DIR`` (where the module configs are).
  stdin is ``/dev/null``.
* stdout is captured (up to :data:`STDOUT_LIMIT` bytes, the rest is read and dropped) for the
  hooks whose contract uses it, and otherwise logged at debug level; stderr is logged as warnings,
  one line per event, at most 1000 bytes per run, control characters shown as spaces.
* The hook runs in its own process group. After ``timeout`` seconds the group gets SIGTERM,
  and ``timeout-kill`` seconds later SIGKILL: a hanging hook never hangs armsd.
* Outcomes: ``ok`` (exit 0), ``failed`` (non-zero exit; a hook that cannot be executed counts as
  exit 127, like armsd), ``timeout``, ``error`` (could not start for another reason).
* Callback hooks run one at a time (the agent calls its callbacks one after the other);
  ``script-state-changed`` runs on a thread of its own, in order, so a slow one never holds
  up the agent (its exit status is ignored anyway).

Secrets given as arguments (PPPoE passwords) are replaced by ``***`` in every log line.
"""

from __future__ import annotations

import errno
import logging
import os
import selectors
import signal
import subprocess
import threading
import time

from .._record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing stays unloaded at run time (footprint)
    from typing import Iterable, Optional, Sequence

log = logging.getLogger("libarms.daemon.hooks")

STDOUT_LIMIT = 64 * 1024
STDERR_LIMIT = 1000
_READ = 4096


class HookResult(Record):
    key: str
    status: str                    # "ok", "failed", "timeout", "error"
    returncode: Optional[int]
    stdout: bytes = b""
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def describe(self) -> str:
        if self.status == "ok":
            return "exit 0"
        if self.status == "failed":
            return f"exit {self.returncode}"
        return self.status


def printable(data: bytes) -> str:
    """Bytes as one log-safe line: non-printable characters become spaces."""
    return "".join(ch if 32 <= ord(ch) < 127 else " " for ch in data.decode("latin-1")).rstrip()


class Redactor:
    """Replaces registered secrets by ``***`` in text. Shared by hooks and the log filter."""

    def __init__(self, secrets: Iterable[str] = ()):
        self._secrets: set = set()
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        for s in secrets:
            # Secrets of one or two characters would blank out ordinary text; they are still
            # hidden where they are known to occur (hook arguments, see HookRunner.run).
            if s and len(s) >= 3:
                self._secrets.add(s)

    def __call__(self, text: str) -> str:
        for s in sorted(self._secrets, key=len, reverse=True):
            if s in text:
                text = text.replace(s, "***")
        return text


class HookRunner:
    """Runs one hook at a time with the armsd contract above."""

    def __init__(self, distribution_id: str, timeout: float = 30.0, kill_grace: float = 5.0,
                 redact: Optional[Redactor] = None, extra_env: Optional[dict] = None):
        self.distribution_id = distribution_id
        self.extra_env = dict(extra_env or {})
        self.timeout = timeout
        self.kill_grace = kill_grace
        self.redact = redact or Redactor()
        self.current: Optional[subprocess.Popen] = None
        self._idle = threading.Event()
        self._idle.set()

    def wait_idle(self, timeout: float) -> bool:
        """Wait (bounded) until no hook of this runner is running."""
        return self._idle.wait(timeout)

    def run(self, key: str, path: str, args: Sequence[str] = (), *, secrets: Sequence[str] = (),
            capture_stdout: bool = False, timeout: Optional[float] = None,
            normal_codes: Sequence[int] = ()) -> HookResult:
        """Run ``path args...``; never raises for anything the hook does. Exit codes in
        ``normal_codes`` are answers, not failures (the line hook's 128..132): logged at debug."""
        self._idle.clear()      # before the fork: a stop signal then waits for the hook
        try:
            return self._run(key, path, args, secrets, capture_stdout, timeout, normal_codes)
        finally:
            self._idle.set()

    @property
    def busy(self) -> bool:
        """True while a hook of this runner is starting or running."""
        return not self._idle.is_set()

    def _run(self, key, path, args, secrets, capture_stdout, timeout, normal_codes):
        argv = [path, *[str(a) for a in args]]
        hidden = sorted((s for s in secrets if s), key=len, reverse=True)

        def redact(text: str) -> str:
            for s in hidden:
                text = text.replace(s, "***")
            return self.redact(text)

        shown = redact(" ".join(argv))
        timeout = self.timeout if timeout is None else timeout
        env = dict(os.environ)
        env.update(self.extra_env)
        env["ARMS_DISTRIBUTION_ID"] = self.distribution_id
        env["ARMSD_HOOK"] = key
        log.debug("hook %s: run %s", key, shown)
        started = time.monotonic()
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=env, close_fds=True,
                                    start_new_session=True, restore_signals=True)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.EACCES, errno.ENOEXEC, errno.ENOTDIR):
                log.error("hook %s: cannot execute %s: %s (counted as exit 127)",
                          key, path, e.strerror)
                return HookResult(key, "failed", 127, b"", time.monotonic() - started)
            log.error("hook %s: cannot start %s: %s", key, path, e)
            return HookResult(key, "error", None, b"", time.monotonic() - started)
        self.current = proc
        try:
            out, err, timed_out = self._communicate(proc, started + timeout)
        except BaseException:
            # armsd is being stopped (or something broke): never leave the hook behind.
            self._kill_group(proc, key, reason="armsd is stopping")
            raise
        finally:
            self.current = None
        elapsed = time.monotonic() - started
        if err:
            for line in err[:STDERR_LIMIT].splitlines():
                text = redact(printable(line))
                if text:
                    log.warning("hook %s: script unhandled error: %s", key, text)
        if out and not capture_stdout:
            for line in out[:STDERR_LIMIT].splitlines():
                text = redact(printable(line))
                if text:
                    log.debug("hook %s: stdout: %s", key, text)
        if timed_out:
            log.error("hook %s: timed out after %.1f s (killed): %s", key, timeout, shown)
            return HookResult(key, "timeout", proc.returncode, out, elapsed)
        rc = proc.returncode
        if rc < 0:
            log.warning("hook %s: killed by signal %d: %s", key, -rc, shown)
        elif rc and rc not in normal_codes:
            log.info("hook %s: exit %d: %s", key, rc, shown)
        else:
            log.debug("hook %s: exit %d in %.3f s", key, rc, elapsed)
        return HookResult(key, "ok" if rc == 0 else "failed", rc,
                          out if capture_stdout else b"", elapsed)

    # -- internals ---------------------------------------------------------------------------

    def _communicate(self, proc: subprocess.Popen, deadline: float):
        """Read stdout/stderr (bounded) until the hook exits or the deadline passes.

        Returns (stdout, stderr, timed_out). After the hook itself exits, what is left in the
        pipes is drained without waiting for descendants that may keep them open (a line hook
        may legitimately start a background pppd).
        """
        out = bytearray()
        err = bytearray()
        sel = selectors.DefaultSelector()
        pidfd = None
        try:
            for f in (proc.stdout, proc.stderr):
                os.set_blocking(f.fileno(), False)
                sel.register(f, selectors.EVENT_READ)
            try:
                pidfd = os.pidfd_open(proc.pid)
                sel.register(pidfd, selectors.EVENT_READ)
            except (AttributeError, OSError):
                pidfd = None
            open_pipes = 2
            for _ in range(10_000_000):           # bounded: every pass consumes time or data
                if proc.poll() is not None:
                    break
                now = time.monotonic()
                if now >= deadline:
                    self._kill_group(proc, "", reason="timeout")
                    self._drain(proc, out, err)
                    return bytes(out), bytes(err), True
                wait = deadline - now
                if pidfd is None:
                    wait = min(wait, 0.05)       # no exit notification: check every 50 ms
                for keyobj, _ev in sel.select(wait):
                    if keyobj.fileobj is pidfd:
                        continue
                    if not self._read_into(keyobj.fileobj, out if keyobj.fileobj is proc.stdout
                                           else err):
                        sel.unregister(keyobj.fileobj)
                        open_pipes -= 1
            self._drain(proc, out, err)
            return bytes(out), bytes(err), False
        finally:
            sel.close()
            if pidfd is not None:
                os.close(pidfd)
            for f in (proc.stdout, proc.stderr):
                try:
                    f.close()
                except OSError:
                    pass

    @staticmethod
    def _read_into(f, buf: bytearray) -> bool:
        try:
            chunk = os.read(f.fileno(), _READ)
        except BlockingIOError:
            return True
        except OSError:
            return False
        if not chunk:
            return False
        room = STDOUT_LIMIT - len(buf)
        if room > 0:
            buf += chunk[:room]
        return True

    def _drain(self, proc, out: bytearray, err: bytearray) -> None:
        for f, buf in ((proc.stdout, out), (proc.stderr, err)):
            for _ in range(STDOUT_LIMIT // _READ + 2):
                try:
                    chunk = os.read(f.fileno(), _READ)
                except (BlockingIOError, OSError, ValueError):
                    break
                if not chunk:
                    break
                room = STDOUT_LIMIT - len(buf)
                if room > 0:
                    buf += chunk[:room]

    def _kill_group(self, proc: subprocess.Popen, key: str, reason: str) -> None:
        """SIGTERM the hook's process group, then SIGKILL after the grace period."""
        for sig, wait in ((signal.SIGTERM, self.kill_grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.wait(timeout=wait)
                if sig == signal.SIGTERM:
                    # The leader is gone; make sure its group is gone too.
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
                return
            except subprocess.TimeoutExpired:
                log.warning("hook %s: still running %.1f s after SIGTERM (%s); sending SIGKILL",
                            key or proc.args[0], wait, reason)
        log.error("hook %s: pid %d survived SIGKILL", key or proc.args[0], proc.pid)
