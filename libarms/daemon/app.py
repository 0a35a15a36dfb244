"""armsd's answer to every libarms callback: a hook script, a module file, or a built-in.

The mapping (script keys and arguments as in IIJ armsd 0.9.0, ``spec/arms-agent.md`` §5.4):

============================  ===============================================================
callback                      what armsd does
============================  ===============================================================
line_ctrl                     ``script-line-ctrl <connect|disconnect|status> <type> <ifindex>
                              [args]``; exit 128..132 = NEEDPOLL, CONNECTED, DISCONNECTED,
                              TIMEOUT, AUTHFAIL; anything else aborts the pull. No script, or a
                              static line: the line is taken as up.
config PULL_STORE_CONFIG      ``script-start <id> <version> <info> <tmpfile>`` (exit ignored),
                              then the file becomes running-config, backup-config and
                              startup-config.
config PUSH_STORE_CONFIG      the data becomes candidate-config/<id>.
config PUSH_EXEC_STORED       ``script-reconfig <id> <newversion> <newinfo> <candidatefile>``
                              per candidate; exit 128 = module sync (reboot) needed; other
                              non-zero or timeout = commit failure (the agent rolls back).
config PUSH_REVERT_CONFIG     each module of the failed commit: backup becomes running again,
                              then ``script-reconfig <id> <version> <info> <backupfile>``.
config REMOVE_MODULE          ``script-stop <id>``, module files deleted.
state                         ``script-state-changed <OLD> <NEW>`` (exit ignored; run on a
                              thread of its own, in order, never holding up the agent).
get_status / clear_status     ``script-status|script-clear <id> <requestfile> <resultfile>``;
                              non-zero/timeout = error for that module. Not configured = 505.
md_command                    ``script-command <id> <requestfile> <resultfile>``; non-zero exit =
                              "Command Execute Error" (102) with the result file as output.
read_config                   the running/backup/candidate file.
ping / traceroute             ``script-ping <dst> <count> <size>`` /
                              ``script-traceroute <addr> <count> <maxhop>`` when set (ours),
                              else the system's ping / traceroute.
dump_debug                    ``script-debug 0 <resultfile>`` when set, else the agent's text.
app_event                     ``script-app-event``; non-zero/timeout = redo push confirmation.
hb_store_statistics           ``script-heartbeat`` (ours: prints ``<item> <ints...>`` lines),
                              else random figures with ``hb-dummy``, else /proc (stats.py).
============================  ===============================================================
"""

from __future__ import annotations

import ipaddress
import logging
import re

from ..callbacks import (Callbacks, ConfigAction, ConfigKind, Frag, Line, LineAction, LineStatus,
                         LineType, PingResult, TraceHop)
from ..errors import AppExecError, ArmsLibError, Err, ModSyncRequired
from ..states import State
from .config import DaemonConfig
from .hooks import HookResult, HookRunner, Redactor
from .modules import MAX_CONFIG_SIZE, ModuleStore
from .stats import DummyStats, LinuxStats, apply_hook_output

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing stays unloaded at run time (footprint)
    from typing import Optional

log = logging.getLogger("libarms.daemon")

#: Largest result file armsd reads back from a status/command/clear hook.
MAX_RESULT_SIZE = 64 * 1024

LINE_EXIT_CODES = {
    128: LineStatus.NEEDPOLL, 129: LineStatus.CONNECTED, 130: LineStatus.DISCONNECTED,
    131: LineStatus.TIMEOUT, 132: LineStatus.AUTHFAIL,
}
_LINE_TYPE_WORDS = {
    LineType.PPPOE: "pppoe", LineType.PPPOE_IPV6: "pppoe6", LineType.DHCP: "dhcp",
    LineType.MOBILE: "mobile", LineType.RA: "ra",
}
_ACTION_WORDS = {LineAction.CONNECT: "connect", LineAction.DISCONNECT: "disconnect",
                 LineAction.STATUS: "status"}
_KIND_NAMES = {ConfigKind.CANDIDATE: "candidate", ConfigKind.RUNNING: "running",
               ConfigKind.BACKUP: "backup"}
_XML_SAFE = frozenset(range(0x20, 0x7F)) | {0x09, 0x0A, 0x0D}
_TEXT_TABLE = bytes(b if b in _XML_SAFE else 0x40 for b in range(256))


class HookError(ArmsLibError):
    """A hook failed, timed out or is not configured; the agent maps it to the error result."""


def _which(name: str) -> Optional[str]:
    """``shutil.which``, imported on first use: shutil (with bz2, lzma, fnmatch) is ~0.5 MiB
    that armsd does not need unless ping/traceroute are asked about."""
    import shutil
    return shutil.which(name)


def as_text(data: bytes) -> str:
    """armsd text mode: bytes that are not XML-safe US-ASCII become ``@``."""
    return bytes(data).translate(_TEXT_TABLE).decode("ascii")


class _StateHookWorker:
    """Runs ``script-state-changed`` in order on a thread of its own: its exit status is ignored,
    so the agent (which reports state changes from inside its I/O loop) never waits for it."""

    MAX_PENDING = 64

    def __init__(self, runner: HookRunner):
        import queue
        import threading
        self.runner = runner
        self._q: "queue.Queue" = queue.Queue()
        self._pending = 0
        self._cv = threading.Condition()
        self._thread = threading.Thread(target=self._work, name="armsd-state-hook", daemon=True)
        self._thread.start()

    def submit(self, path: str, args: list, timeout: float, kill_grace: float) -> None:
        with self._cv:
            if self._pending >= self.MAX_PENDING:
                log.warning("script-state-changed %s skipped: %d runs still pending",
                            " ".join(args), self._pending)
                return
            self._pending += 1
        self._q.put((path, args, timeout, kill_grace))

    def _work(self) -> None:
        while True:
            path, args, timeout, grace = self._q.get()
            try:
                self.runner.kill_grace = grace
                res = self.runner.run("script-state-changed", path, args, timeout=timeout)
                if not res.ok:
                    log.debug("script-state-changed %s (ignored)", res.describe())
            except Exception:
                log.exception("script-state-changed could not run")
            finally:
                with self._cv:
                    self._pending -= 1
                    self._cv.notify_all()

    def flush(self, timeout: float) -> bool:
        with self._cv:
            return self._cv.wait_for(lambda: self._pending == 0, timeout)


class StateTracker:
    """The agent's current state, for log lines."""

    def __init__(self):
        self.state = State.INITIAL


class ArmsdCallbacks(Callbacks):
    """The libarms callbacks of armsd. ``cfg`` may be swapped at any time (SIGHUP)."""

    def __init__(self, cfg: DaemonConfig, runner: HookRunner, store: ModuleStore,
                 tracker: Optional[StateTracker] = None, redact: Optional[Redactor] = None):
        self.cfg = cfg
        self.runner = runner
        self.store = store
        self.tracker = tracker or StateTracker()
        self.redact = redact or runner.redact
        self.stopping = False         # set while armsd shuts down: modules keep running
        self.agent = None             # for per-phase proxies (set by the daemon)
        self.after_hook = None        # called after every hook run (the daemon's stop check)
        self._frags: dict = {}        # (action, id) -> bytearray
        self._committed: list = []    # ids changed by the last PUSH_EXEC_STORED_CONFIG
        self._added: set = set()      # ... of which had no running config before
        self._pending_meta: dict = {}  # id -> (version, info) of candidates
        self._pulled: set = set()     # ids delivered by the current pull
        self._linux = None
        self._dummy = None
        self._state_hooks: Optional[_StateHookWorker] = None
        self._hb_runner: Optional[HookRunner] = None

    # -- helpers -----------------------------------------------------------------------------

    def run_hook(self, key: str, args=(), **kw) -> Optional[HookResult]:
        path = self.cfg.script(key)
        if not path:
            return None
        self.runner.timeout = self.cfg.timeout
        self.runner.kill_grace = self.cfg.timeout_kill
        res = self.runner.run(key, path, args, **kw)
        if self.after_hook is not None:
            self.after_hook()
        return res

    def _result(self, data: bytes):
        return data if self.cfg.binary > 0 else as_text(data)

    def supports(self, name: str) -> bool:
        cfg = self.cfg
        if name == "get_status":
            return bool(cfg.script("script-status"))
        if name == "clear_status":
            return bool(cfg.script("script-clear"))
        if name == "md_command":
            return bool(cfg.script("script-command"))
        if name == "app_event":       # no script: no timer, no wake-ups
            return bool(cfg.script("script-app-event"))
        if name == "ping":
            return bool(cfg.script("script-ping") or _which("ping"))
        if name == "traceroute":
            return bool(cfg.script("script-traceroute") or _which("traceroute"))
        return super().supports(name)

    # -- pull phase --------------------------------------------------------------------------

    def line_ctrl(self, action: LineAction, line: Line) -> LineStatus:
        action = LineAction(action)
        ltype = LineType(line.type)
        word = _LINE_TYPE_WORDS.get(ltype)
        default = (LineStatus.DISCONNECTED if action == LineAction.DISCONNECT
                   else LineStatus.CONNECTED)
        if ltype == LineType.STATIC or not self.cfg.script("script-line-ctrl"):
            return default
        if word is None:
            raise HookError(f"line type {ltype.name} cannot be handled by script-line-ctrl")
        args = [_ACTION_WORDS[action], word, str(line.ifindex)]
        secrets = []
        if ltype in (LineType.PPPOE, LineType.PPPOE_IPV6):
            args += [line.pppoe_id, line.pppoe_pass]
            secrets.append(line.pppoe_pass)
        elif ltype == LineType.MOBILE:
            args += [line.pppoe_id, line.pppoe_pass, line.telno, str(line.cid), line.apn, line.pdp]
            secrets.append(line.pppoe_pass)
        self.redact.add(*secrets)
        res = self.run_hook("script-line-ctrl", args, secrets=secrets,
                            normal_codes=tuple(LINE_EXIT_CODES))
        if res.status == "failed" and res.returncode in LINE_EXIT_CODES:
            status = LINE_EXIT_CODES[res.returncode]
            log.info("line %s %s ifindex %d: %s (script-line-ctrl exit %d)",
                     _ACTION_WORDS[action], word, line.ifindex, status.name, res.returncode)
            return status
        raise HookError(f"script-line-ctrl {_ACTION_WORDS[action]} {word}: {res.describe()} "
                        "(expected exit 128..132)")

    def config(self, module_id, version, info, action, data, flags) -> None:
        action = ConfigAction(action)
        if action == ConfigAction.PULL_STORE_CONFIG:
            whole = self._collect(action, module_id, data, flags)
            if whole is not None:
                self._pull_store(module_id, version or "", info or "", whole)
        elif action == ConfigAction.PUSH_STORE_CONFIG:
            whole = self._collect(action, module_id, data, flags)
            if whole is not None:
                tmp = self.store.new_tmp(whole)
                self.store.install(tmp, "candidate", module_id)
                self._pending_meta[int(module_id)] = (version or "", info or "")
                log.info("module %d: candidate config stored (version %s, %d bytes)",
                         module_id, version, len(whole))
        elif action == ConfigAction.PUSH_EXEC_STORED_CONFIG:
            self._commit()
        elif action == ConfigAction.PUSH_REVERT_CONFIG:
            self._revert()
        elif action == ConfigAction.REMOVE_MODULE:
            self._remove(module_id)

    def _collect(self, action, module_id, data, flags) -> Optional[bytes]:
        key = (int(action), int(module_id))
        flags = Frag(flags)
        if flags & Frag.FIRST or key not in self._frags:
            self._frags[key] = bytearray()
        buf = self._frags[key]
        buf += data or b""
        if len(buf) > MAX_CONFIG_SIZE:
            del self._frags[key]
            raise HookError(f"module {module_id}: config larger than {MAX_CONFIG_SIZE} bytes")
        if flags & Frag.FINISHED:
            return bytes(self._frags.pop(key))
        return None

    def _pull_store(self, module_id: int, version: str, info: str, data: bytes) -> None:
        tmp = self.store.new_tmp(data)
        try:
            res = self.run_hook("script-start", [str(module_id), version, info, tmp])
            if res is not None and not res.ok:
                log.warning("module %d: script-start %s (ignored, as armsd does)",
                            module_id, res.describe())
            self.store.install(tmp, "running", module_id)
        finally:
            self.store.discard(tmp)
        self.store.copy("running", "backup", module_id)
        self.store.copy("running", "startup", module_id)
        self.store.set_meta(module_id, version, info)
        self._pulled.add(int(module_id))
        log.info("module %d: config version %s applied (%d bytes)", module_id, version, len(data))

    def _commit(self) -> None:
        """Apply the candidates stored by this configure, in module-list order."""
        self._committed = []
        self._added = set()
        order = {m: i for i, m in enumerate(self.store.module_ids())}
        ids = sorted((m for m in self._pending_meta if self.store.exists("candidate", m)),
                     key=lambda m: (order.get(m, len(order)), m))
        failed = []
        for mid in ids:
            version, info = self._pending_meta.get(mid, ("", ""))
            res = self.run_hook("script-reconfig", [str(mid), version, info,
                                                 self.store.path("candidate", mid)])
            if res is not None and res.status == "failed" and res.returncode == 128:
                log.info("module %d: script-reconfig asks for a module sync (reboot)", mid)
                raise ModSyncRequired(f"module {mid}")
            # In every other case the candidate becomes running (old running -> backup), so
            # that a rollback can restore what was in force.
            if not self.store.copy("running", "backup", mid):
                self._added.add(mid)          # a new module: a rollback removes it again
                self.store.discard(self.store.path("backup", mid))
            self.store.install(self.store.path("candidate", mid), "running", mid)
            self._committed.append(mid)
            if res is None or res.ok:
                self.store.set_meta(mid, version, info)
                log.info("module %d: config version %s committed", mid, version)
            else:
                failed.append(f"module {mid}: script-reconfig {res.describe()}")
        self._pending_meta.clear()
        if failed:
            raise HookError("; ".join(failed))

    def _revert(self) -> None:
        errors = []
        for mid in self._committed or [m for m in self.store.module_ids()
                                       if self.store.exists("backup", m)]:
            if mid in self._added:
                # it had no config before this commit: stop it and forget it
                self.stop_module(mid)
                self.store.remove(mid)
                log.info("module %d: rolled back (it did not exist before)", mid)
                continue
            if not self.store.copy("backup", "running", mid):
                errors.append(f"module {mid}: no backup config")
                continue
            meta = self.store.meta.get(mid, {})
            res = self.run_hook("script-reconfig", [str(mid), meta.get("version", ""),
                                                 meta.get("info", ""),
                                                 self.store.path("backup", mid)])
            log.info("module %d: rolled back to the backup config%s", mid,
                     "" if res is None else f" (script-reconfig {res.describe()})")
        self._committed = []
        self._added = set()
        if errors:
            raise HookError("; ".join(errors))

    def _remove(self, module_id: int) -> None:
        if self.stopping:
            log.debug("module %d left running: armsd is stopping", module_id)
            return
        self.stop_module(module_id)
        self.store.remove(module_id)
        log.info("module %d removed", module_id)

    def stop_module(self, module_id: int) -> None:
        res = self.run_hook("script-stop", [str(module_id)])
        if res is not None and not res.ok:
            log.warning("module %d: script-stop %s (ignored)", module_id, res.describe())

    def begin_pull(self) -> None:
        self._pulled = set()
        self._frags.clear()

    def prune_after_pull(self) -> None:
        """Modules kept from an earlier run that this pull did not deliver are stopped."""
        for mid in self.store.module_ids():
            if mid not in self._pulled:
                log.info("module %d is no longer in the service config: stopping it", mid)
                self.stop_module(mid)
                self.store.remove(mid)

    def state(self, old, new) -> None:
        old, new = State(old), State(new)
        self.tracker.state = new
        log.debug("state %s -> %s", old.name, new.name)
        self._phase_proxy(new)
        path = self.cfg.script("script-state-changed")
        if path:
            self._state_worker().submit(path, [old.name, new.name], self.cfg.timeout,
                                        self.cfg.timeout_kill)

    def _state_worker(self) -> "_StateHookWorker":
        if self._state_hooks is None:
            self._state_hooks = _StateHookWorker(
                HookRunner(self.runner.distribution_id, redact=self.redact,
                           extra_env=self.runner.extra_env))
        return self._state_hooks

    def reset_after_fork(self) -> None:
        """In a forked child (``-w``): the state hook thread did not survive the fork."""
        self._state_hooks = None

    def flush_state_hooks(self, timeout: float = 30.0) -> bool:
        """Wait (bounded) until every queued script-state-changed run has finished."""
        return self._state_hooks is None or self._state_hooks.flush(timeout)

    def _phase_proxy(self, new: State) -> None:
        cfg = self.cfg
        url = {State.LSPULL: cfg.https_proxy_url_ls, State.RSPULL: cfg.https_proxy_url_rs}.get(new)
        if url is None or self.agent is None:
            return
        try:
            self.agent.set_https_proxy(url or None)
        except Exception as e:
            log.error("cannot set the %s proxy: %s", new.name, self.redact(str(e)))

    def log(self, code: int, message: str) -> None:
        """The agent logs every event itself through ``logging`` (our handler formats and
        redacts it); nothing more to do here."""

    # -- push phase --------------------------------------------------------------------------

    def read_config(self, module_id: int, kind: ConfigKind):
        name = _KIND_NAMES.get(ConfigKind(kind))
        try:
            return self._result(self.store.read(name, module_id, MAX_RESULT_SIZE))
        except FileNotFoundError:
            raise HookError(f"module {module_id}: no {name} config") from None

    def _request_hook(self, key: str, module_id: int, request: bytes) -> tuple:
        if not self.cfg.script(key):
            raise HookError(f"{key} is not configured")
        req = self.store.new_tmp(request or b"")
        res_path = self.store.new_tmp(b"")
        try:
            res = self.run_hook(key, [str(module_id), req, res_path])
            try:
                with open(res_path, "rb") as f:
                    out = f.read(MAX_RESULT_SIZE)
            except OSError:
                out = b""
            return res, out
        finally:
            self.store.discard(req)
            self.store.discard(res_path)

    def get_status(self, module_id: int, request: bytes):
        res, out = self._request_hook("script-status", module_id, request)
        if not res.ok:
            raise HookError(f"script-status {res.describe()}")
        return self._result(out)

    def clear_status(self, module_id: int, request: bytes):
        res, out = self._request_hook("script-clear", module_id, request)
        if not res.ok:
            raise HookError(f"script-clear {res.describe()}")
        return self._result(out)

    def md_command(self, module_id: int, command: bytes):
        res, out = self._request_hook("script-command", module_id, command)
        if res.status == "failed":
            raise AppExecError(self._result(out), f"script-command exit {res.returncode}")
        if not res.ok:
            raise HookError(f"script-command {res.describe()}")
        return self._result(out)

    def ping(self, dst: str, count: int, size: int) -> PingResult:
        try:
            family = ipaddress.ip_address(dst).version
        except ValueError:
            raise HookError(f"ping destination {dst!r} is not a numeric address") from None
        if self.cfg.script("script-ping"):
            res = self.run_hook("script-ping", [dst, str(count), str(size)], capture_stdout=True)
        else:
            prog = _which("ping6" if family == 6 else "ping") or _which("ping")
            if not prog:
                raise HookError("no ping program on this host and no script-ping")
            args = (["-6"] if family == 6 and prog.endswith("/ping") else []) + \
                ["-n", "-q", "-c", str(count), "-s", str(size), dst]
            res = self.runner.run("ping", prog, args, capture_stdout=True,
                                  timeout=max(self.cfg.timeout, count * 2.0 + 5))
        if res.status in ("timeout", "error"):
            raise HookError(f"ping {res.describe()}")
        m = re.search(rb"(\d+) packets transmitted, (\d+) (?:packets )?received", res.stdout)
        if not m:
            raise HookError("ping output has no 'N packets transmitted, M received' line")
        sent, got = int(m.group(1)), int(m.group(2))
        return PingResult(success=got, failure=max(0, sent - got))

    def traceroute(self, addr: str, count: int, maxhop: int):
        try:
            family = ipaddress.ip_address(addr).version
        except ValueError:
            raise HookError(f"traceroute address {addr!r} is not a numeric address") from None
        if self.cfg.script("script-traceroute"):
            res = self.run_hook("script-traceroute", [addr, str(count), str(maxhop)],
                             capture_stdout=True)
        else:
            prog = _which("traceroute")
            if not prog:
                raise HookError("no traceroute program on this host and no script-traceroute")
            res = self.runner.run("traceroute", prog,
                                  [f"-{family}", "-n", "-m", str(maxhop), "-q", str(count), addr],
                                  capture_stdout=True, timeout=max(self.cfg.timeout, 60.0))
        if res.status in ("timeout", "error"):
            raise HookError(f"traceroute {res.describe()}")
        hops = []
        for line in res.stdout.decode("ascii", "replace").splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0].isdigit():
                hops.append(TraceHop(int(parts[0]), parts[1][:255]))
            if len(hops) >= 256:
                break
        return hops

    def dump_debug(self):
        if not self.cfg.script("script-debug"):
            return None
        res_path = self.store.new_tmp(b"")
        try:
            res = self.run_hook("script-debug", ["0", res_path])
            if not res.ok:
                raise HookError(f"script-debug {res.describe()}")
            with open(res_path, "rb") as f:
                return self._result(f.read(MAX_RESULT_SIZE))
        finally:
            self.store.discard(res_path)

    def app_event(self) -> int:
        res = self.run_hook("script-app-event")
        if res is None or res.ok:
            return 0
        log.info("script-app-event %s: line status changed, redoing the push confirmation",
                 res.describe())
        return int(Err.EPUSH)

    def hb_store_statistics(self, hb) -> None:
        cfg = self.cfg
        if cfg.script("script-heartbeat"):
            # The heartbeat thread calls this while other hooks may run: its own runner.
            if self._hb_runner is None:
                self._hb_runner = HookRunner(self.runner.distribution_id, redact=self.redact,
                                             extra_env=self.runner.extra_env)
            self._hb_runner.kill_grace = cfg.timeout_kill
            res = self._hb_runner.run("script-heartbeat", cfg.script("script-heartbeat"),
                                      capture_stdout=True, timeout=cfg.timeout)
            if res.ok:
                apply_hook_output(hb, res.stdout.decode("ascii", "replace"))
            else:
                log.warning("script-heartbeat %s: heartbeat sent without statistics",
                            res.describe())
            return
        if cfg.hb_dummy:
            if self._dummy is None:
                self._dummy = DummyStats()
            self._dummy.collect(hb)
            return
        if self._linux is None or self._linux.disks != cfg.hb_disk_usage[:3] \
                or self._linux.interfaces != cfg.hb_traffic_if[:4]:
            self._linux = LinuxStats(cfg.hb_disk_usage, cfg.hb_traffic_if)
        self._linux.collect(hb)
