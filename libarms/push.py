"""The push phase: method query and event loop (``arms_push_method_query`` / ``arms_event_loop``).

Spec: W 1.5-1.6, 2.5, 3.4, 4, 5, 6; A 2.5-2.8. Entry points ``push_method_query(agent)`` and
``event_loop(agent, port, fragment)`` take the :class:`~libarms.agent.Agent` (or a
:class:`PushContext` directly) and return an :class:`~libarms.errors.Err` code.

Execution model (plain threads and blocking sockets with deadlines; no asyncio: it alone would
cost a daemon in push wait 3.4-5 MiB of its 18 MiB budget). The thread that calls
``event_loop`` supervises: it runs the push rounds one after the other and, when the
application has an ``app_event`` callback, its timer. A round runs on a round thread: an
https-tunnel round is tunnel 0's worker (one more worker thread per further tunnel URL), an
https-simple round is the listener (``poll`` on the listening sockets). A tunnel worker owns
its connection's reads and the echo keepalive (``poll`` with the time to the next echo), so an
idle push wait has no other wake-up. A push request, an https-simple connection, a confirmation
start and the confirmation watchdog each get a short-lived thread. Application callbacks run
one at a time on the callback thread (:class:`CallbackRunner`, started on first use) with a
time limit; a callback that raises or overruns gives the protocol's error result, and the loop
goes on (an overrunning callback's thread is abandoned and a fresh one takes over). Several
operations can be in flight; md-command and configure are one at a time (302), as in 5.33.

Every thread of a round knows its round (``_tl.end``, a :class:`RoundEnd`): when the round ends
(outcome set, its wake-up pipe readable), its waits give up (``_Cancelled``, or a poll that
returns) and it can no longer end or confirm a later round. One condition variable per loop
(``EventLoop.cv``) carries every other wait: callback results, done answers, live tunnels.

Loop-ending outcomes: ``Err.EREBOOT`` (reboot push, module sync, 503/5xx), ``Err.EPULL``
(pull-config, 2xx/502/508, rollback failure, no working push method), ``Err.EDONTRETRY``
(501). The loop never returns OK (like 5.33).
"""

from __future__ import annotations

import collections
import logging
import os
import select
import signal
import socket
import ssl
import threading
import time

from ._record import Record, field
from .callbacks import Callbacks, ConfigAction, ConfigKind, Frag
from .configstore import ConfigStore
from .errors import AppExecError, ArmsError, ConfigError, Err, ModSyncRequired, ProtocolError
from .protocol import push as P
from .states import Event, State, next_state
from .transport import pushtls
from .transport.simple import (SimpleRequestParser, build_form_a, build_form_b, build_sa_error,
                               build_sa_response, close_tls, exchange)
from .transport.tls import recv_until
from .transport.tunnel import ChunkKind, MessageAssembler, TunnelClosed, TunnelConnection

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing stays unloaded at run time (footprint)
    from typing import Any, Callable, Optional, Sequence

try:  # heartbeat sender of the C core, once built
    from .heartbeat import HeartbeatSender  # type: ignore
except Exception:  # pragma: no cover - absent until the core lands
    HeartbeatSender = None  # type: ignore

#: Per thread: ``ctx`` (the push context, for log lines) and ``end`` (the round it works for).
_tl = threading.local()
#: The state and log callbacks come from several push threads: one call at a time, as when a
#: single loop thread made them (re-entrant: a state callback may log).
_notify_lock = threading.RLock()


class _EventLog(logging.LoggerAdapter):
    """One event per line, with the distribution id and the state (style.md)."""

    def process(self, msg, kwargs):
        ctx = getattr(_tl, "ctx", None)
        if ctx is not None:
            msg = f"{msg} dist={ctx.distribution_id} state={ctx.state.name}"
        return msg, kwargs


log = _EventLog(logging.getLogger("libarms.push"), {})

# log codes (A 4.8)
LOG_CONFIRM_START, LOG_CONFIRM_DONE, LOG_CONFIRM_FAILED = 70, 71, 72
LOG_CONFIG_COMMIT, LOG_CONFIG_ROLLBACK = 73, 74
LOG_TUNNEL_CONNECTED, LOG_TUNNEL_CLOSED, LOG_TUNNEL_RETRY, LOG_TUNNEL_READY = 60, 61, 62, 63
LOG_HB_START, LOG_HB_STOP = 80, 81
LOG_PUSH_SIMPLE, LOG_PUSH_TUNNEL, LOG_ENDPOINT_CHANGED = 90, 91, 92
LOG_EROLLBACK = 110
LOG_ECALLBACK = 108
LOG_ENETTIMEOUT = 107

SIMPLE_MAX_TRANSACTIONS = 10
#: https-simple connections served at once (a thread each); more are closed at once
SIMPLE_MAX_CONNECTIONS = 16
#: ``arms_set_app_event_interval`` bounds and default (A 2.7), seconds
MIN_APP_EVENT_INTERVAL, MAX_APP_EVENT_INTERVAL, DEFAULT_APP_EVENT_INTERVAL = 0.1, 600.0, 60.0
#: What a failed exchange with a server can raise (bad bytes, network, TLS, proxy, timeouts).
NET_ERRORS = (ProtocolError, OSError, ssl.SSLError, EOFError)


class PushContext(Record, frozen=False):
    """Everything the push phase needs from the pull, plus what the method query learns."""

    distribution_id: str
    rs_key: str
    rs_ca_pem: Optional[bytes]
    sa_cert_pem: Optional[bytes]
    sa_key_pem: Optional[bytes]
    pull_urls: Sequence[str]
    callbacks: Callbacks
    description: str = ""
    rs_url: Optional[str] = None             # RS that answered the pull (first done target)
    rs_retry_max: int = 0
    rs_retry_interval: float = 0.0
    modules: list = field(default_factory=list)   # list[P.ModuleInfo]
    heartbeat_servers: Sequence[Any] = ()
    heartbeat_interval: int = 0
    https_proxy: Optional[str] = None
    state_dir: Optional[str] = None
    pull_index: int = 0
    # learnt by the method query
    methods: tuple = ()
    tunnel_urls: tuple = ()
    echo_interval: float = P.DEFAULT_ECHO_INTERVAL
    sa_address: Optional[str] = None
    # outcome for the next pull
    trigger: str = ""
    clear_rs_endpoint: bool = False
    # tuning (defaults are the spec's; tests shorten them)
    callback_timeout: float = 60.0
    io_timeout: float = 30.0
    confirm_timeout: float = 60.0
    app_event_interval: float = DEFAULT_APP_EVENT_INTERVAL
    reconnect_base: Optional[float] = None   # backoff base; default rs_retry_interval or 1 s
    reconnect_cap: float = 300.0
    bind_attempts: int = 8
    bind_retry_wait: float = 60.0
    done_wait: float = 60.0
    configure_reconnect_wait: float = 1.0    # W 5.5: tunnel rebuilt 1 s after configure-start
    max_message: int = P.MAX_MESSAGE
    listen_host: Optional[str] = None        # default: wildcard of the SA address family
    _running: Any = field(default=None, repr=False, compare=False)
    time_floor: float = 0.0                  # latest trusted time (see transport.tls)
    state: State = State.PULLDONE
    set_state: Optional[Callable[[State], None]] = None
    log_fn: Optional[Callable[[int, str], None]] = None

    def fire(self, event: Event) -> None:
        """Move along the transition table (``libarms/states.py``); callbacks on change.
        Any push thread may fire: one at a time (``_notify_lock``)."""
        with _notify_lock:
            new = next_state(self.state, event)
            if self.set_state is not None:
                self.set_state(new)
                self.state = new
                return
            old, self.state = self.state, new
            if old != new:
                try:
                    self.callbacks.state(old, new)
                except Exception:
                    log.exception("state callback raised")

    def event(self, code: int, message: str) -> None:
        with _notify_lock:        # the log callback, like state, is never called twice at once
            if self.log_fn is not None:
                self.log_fn(code, message)
                return
            level = logging.DEBUG if code >= 200 else logging.WARNING if code >= 100 else logging.INFO
            log.log(level, "[%d] %s", code, message)
            try:
                self.callbacks.log(code, message)
            except Exception:
                log.exception("log callback raised")

    def tls_policy(self):
        return pushtls.policy(self.rs_ca_pem, self.sa_cert_pem, self.sa_key_pem, self.time_floor)

    def client_ssl(self) -> ssl.SSLContext:
        return pushtls.client_context(self.tls_policy())

    def tls_args(self) -> dict:
        """Keyword arguments for ``connect_tls``: peer check and web proxy."""
        return {"policy": self.tls_policy(), "proxy": self.https_proxy,
                "note": lambda m: self.event(200, m)}


def context_of(agent: Any) -> PushContext:
    """The push context of ``agent``: a :class:`PushContext` itself, or one kept on an
    :class:`~libarms.agent.Agent` and refreshed from its ``ctx`` (what the pull learnt)."""
    if isinstance(agent, PushContext):
        return agent
    c = getattr(agent, "ctx", None)
    if c is None:
        raise TypeError("push needs a PushContext or an Agent")
    try:
        from .heartbeat import HbServer
        hbs = [HbServer(h.host, int(h.port), h.passphrase) for h in c.heartbeat]
    except Exception as e:      # bad heartbeat data: no heartbeat at all (W App. A)
        log.warning("heartbeat disabled: %s", e)
        hbs = []
    fields = dict(
        distribution_id=str(c.distribution_id), rs_key=c.rs_key, rs_ca_pem=_pem(c.rs_ca_pem),
        sa_cert_pem=_pem(c.sa_cert_pem), sa_key_pem=_pem(c.sa_key_pem),
        pull_urls=list(c.rs_pull_urls), callbacks=c.callbacks, description=c.description or "",
        rs_url=c.rs_endpoint or None, rs_retry_max=int(c.rs_retry_max),
        rs_retry_interval=float(c.rs_retry_interval),
        modules=[P.ModuleInfo(int(m.id), m.version or "", m.info or "") for m in c.modules],
        heartbeat_servers=hbs, heartbeat_interval=int(c.heartbeat[0].interval) if c.heartbeat else 0,
        https_proxy=c.https_proxy, pull_index=max(int(c.rs_pull_1st), 0),
        methods=tuple(c.push_methods), tunnel_urls=tuple(c.tunnel_urls),
        echo_interval=c.tunnel_echo_interval or P.DEFAULT_ECHO_INTERVAL, sa_address=c.sa_address,
        io_timeout=float(getattr(agent, "response_timeout", 30.0)),
        callback_timeout=float(getattr(agent, "callback_timeout", 60.0)),
        state_dir=getattr(agent, "push_state_dir", None),
        app_event_interval=float(getattr(agent, "app_event_interval", DEFAULT_APP_EVENT_INTERVAL)),
        time_floor=float(getattr(c, "time_floor", 0.0)),
        state=agent.state, set_state=agent._set_state, log_fn=agent._log)
    pc = getattr(agent, "_push_ctx", None)
    if pc is None:
        pc = PushContext(**fields)
        agent._push_ctx = pc
    else:
        for k, v in fields.items():
            setattr(pc, k, v)
    return pc


def _pem(v) -> Optional[bytes]:
    if v is None or v == "":
        return None
    return v.encode("ascii") if isinstance(v, str) else bytes(v)


def _write_back(agent: Any, pc: PushContext) -> None:
    """What the push phase learnt goes back into the agent's context (method query answer,
    trigger for the next pull, LS skip cleared by pull-config LS, module list)."""
    if isinstance(agent, PushContext):
        return
    c = agent.ctx
    c.push_methods, c.tunnel_urls = list(pc.methods), list(pc.tunnel_urls)
    c.tunnel_echo_interval, c.sa_address = int(pc.echo_interval), pc.sa_address
    if pc.trigger:
        c.trigger = pc.trigger
    if pc.clear_rs_endpoint:
        c.forget_rs()
        pc.clear_rs_endpoint = False
    try:
        from .protocol.pull import Module
        c.modules = [Module(m.id, m.version, m.info) for m in pc.modules]
    except Exception:
        log.exception("module list not written back")


def set_app_event_interval(agent: Any, seconds: float) -> None:
    """``arms_set_app_event_interval``: how often the push loop calls ``app_event``
    (0.1..600 s, else ArmsError(EINVAL)). Takes effect at the next wake-up of a running loop."""
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        raise ArmsError(Err.EINVAL, f"app-event interval {seconds!r} is not a number") from None
    if not MIN_APP_EVENT_INTERVAL <= value <= MAX_APP_EVENT_INTERVAL:
        raise ArmsError(Err.EINVAL, f"app-event interval {value:g} s outside "
                                    f"{MIN_APP_EVENT_INTERVAL:g}..{MAX_APP_EVENT_INTERVAL:g} s")
    agent.app_event_interval = value
    pc = getattr(agent, "_push_ctx", None)
    if pc is not None:
        pc.app_event_interval = value


def get_app_event_interval(agent: Any) -> float:
    """``arms_get_app_event_interval``: the interval in seconds."""
    return float(getattr(agent, "app_event_interval", DEFAULT_APP_EVENT_INTERVAL))


def stop_event_loop(agent: Any, result: Err = Err.EPULL) -> bool:
    """Ask a running event loop (any thread) to end with ``result``; False if none runs."""
    ctx = agent if isinstance(agent, PushContext) else getattr(agent, "_push_ctx", None)
    if ctx is None:
        return False
    running = ctx._running
    if not running:
        return False
    running[1].request_stop(result)
    return True


# -- threads, rounds, callback runner ---------------------------------------------------------------

class _Cancelled(BaseException):
    """The push round this thread works for is over (like a cancelled task: not an Exception,
    so ``except Exception`` handlers let it through and ``finally`` blocks run)."""


def _round_over() -> bool:
    """True in a thread of a push round that has ended."""
    end = getattr(_tl, "end", None)
    return end is not None and end.done


def _spawn(target: Callable, name: str, *args, end: Optional["RoundEnd"] = None) -> threading.Thread:
    """Start a daemon thread that knows the push context and the round of its spawner (or
    ``end``); ``_Cancelled`` ends it quietly, anything else is logged."""
    ctx = getattr(_tl, "ctx", None)
    rnd = end if end is not None else getattr(_tl, "end", None)

    def main():
        _tl.ctx, _tl.end = ctx, rnd
        try:
            target(*args)
        except _Cancelled:
            pass
        except Exception:
            log.exception("%s failed", name)
    th = threading.Thread(target=main, name=name, daemon=True)
    th.start()
    return th


def _uniform(high: float) -> float:
    """A uniform draw in [0, high) from os.urandom (no ``random`` module for one jitter)."""
    return high * (int.from_bytes(os.urandom(7), "big") / 2**56)


class RoundEnd:
    """The outcome of one push round: set once (first wins), wakes ``cv`` waiters and makes
    ``wake_fd`` readable for threads waiting in ``poll``."""

    def __init__(self, cv: threading.Condition):
        self.cv = cv
        self.result: Optional[Err] = None
        self._r, self._w = os.pipe()

    @property
    def done(self) -> bool:
        return self.result is not None

    @property
    def wake_fd(self) -> int:
        return self._r

    def stop(self, result: Err) -> None:
        with self.cv:
            if self.result is not None:
                return
            self.result = result
            self.cv.notify_all()
            if self._w >= 0:              # under cv: close() cannot free it meanwhile
                try:
                    os.write(self._w, b"x")
                except OSError:
                    pass

    def close(self) -> None:
        with self.cv:
            fds, self._r, self._w = (self._r, self._w), -1, -1
        for fd in fds:
            if fd >= 0:
                os.close(fd)


class CallbackTimeout(Exception):
    pass


class _Call:
    __slots__ = ("fn", "args", "done", "result", "error")

    def __init__(self, fn: Callable, args: tuple):
        self.fn, self.args = fn, args
        self.done, self.result, self.error = False, None, None


class CallbackRunner:
    """Runs application callbacks one at a time on a worker thread, each with a time limit.

    The worker starts with the first call. A caller waits on the loop's condition variable; when
    its callback overruns, the worker (stuck in some callback) is abandoned: a fresh one takes
    the queue over and the old one leaves after its callback returns (its outcome dropped)."""

    def __init__(self, timeout: float, cv: Optional[threading.Condition] = None):
        self.timeout = timeout
        self.cv = cv or threading.Condition()
        self._items: collections.deque = collections.deque()
        self._gen = 0
        self._started = False
        self._closed = False

    def _start(self) -> None:          # with cv held
        self._gen += 1
        self._started = True
        ctx = getattr(_tl, "ctx", None)
        threading.Thread(target=self._work, args=(self._gen, ctx), name="libarms-callbacks",
                         daemon=True).start()

    def _work(self, gen: int, ctx) -> None:
        _tl.ctx = ctx
        cv = self.cv
        with cv:
            while True:
                while not self._items and gen == self._gen and not self._closed:
                    cv.wait()
                if gen != self._gen or self._closed:
                    return
                c = self._items.popleft()
                cv.release()
                try:
                    try:
                        c.result = c.fn(*c.args)
                    except BaseException as e:    # handed to the caller, never lost
                        c.error = e
                finally:
                    cv.acquire()
                c.done = True
                cv.notify_all()

    def call(self, fn: Callable, *args, timeout: Optional[float] = None,
             abort: Optional[Callable[[], bool]] = None, slice: Optional[float] = None):
        """Run ``fn(*args)`` on the callback thread and return its result (or raise its
        exception); CallbackTimeout after the time limit; ``_Cancelled`` once ``abort()``.
        ``slice``: wake up that often (the main thread, so that signal handlers run)."""
        limit = timeout or self.timeout
        c = _Call(fn, args)
        cv = self.cv
        with cv:
            if self._closed:
                raise _Cancelled()
            if not self._started:
                self._start()
            self._items.append(c)
            cv.notify_all()
            deadline = time.monotonic() + limit
            while not c.done:
                if abort is not None and abort():
                    raise _Cancelled()
                left = deadline - time.monotonic()
                if left <= 0:
                    # the worker is stuck in this callback (or one before it): waiting work
                    # goes to a fresh thread; this call's late outcome is dropped
                    self._start()
                    cv.notify_all()
                    raise CallbackTimeout(f"callback {getattr(fn, '__name__', fn)} overran {limit} s")
                cv.wait(left if slice is None else min(left, slice))
        if c.error is not None:
            raise c.error
        return c.result

    def close(self) -> None:
        with self.cv:
            self._closed = True
            self._items.clear()
            self.cv.notify_all()


# -- the operations ----------------------------------------------------------------------------

class Answer(Record, frozen=False):
    """What the device answers to one push request, and what follows."""

    pieces: list
    followup: Optional[Callable[[], Any]] = None     # async: returns DoneReport
    end: Optional[Err] = None                        # loop ends after the answer is written
    confirmed: bool = False                          # push-confirmation-done served
    transaction: Optional["Transaction"] = None


class DoneReport(Record, frozen=False):
    method: str
    transaction_id: int
    result: int
    body: list


class Transaction(Record, frozen=False):
    id: int
    method: str
    link: str


_CALLBACK_OF = {"read-status": "get_status", "clear-status": "clear_status",
                "read-storage": "read_config", "ping": "ping", "traceroute": "traceroute",
                "md-command": "md_command"}


class Dispatcher:
    """Turns push requests into answers and done reports, through the callbacks."""

    def __init__(self, ctx: PushContext, runner: CallbackRunner, loop_state: "LoopState"):
        self.ctx = ctx
        self.cb = ctx.callbacks
        self.runner = runner
        self.ls = loop_state
        self.transactions: dict[int, Transaction] = {}
        self.md_busy = False
        self.configure_busy = False
        self.store = ConfigStore(ctx.state_dir)
        #: transactions, md_busy and configure_busy are checked and set by several threads
        self.lock = threading.Lock()

    def _new_tid(self) -> int:
        with self.lock:
            for _ in range(1000):         # bounded; a clash is 1 in 2^31 per open transaction
                t = int.from_bytes(os.urandom(4), "big") & 0x7FFFFFFF
                if t and t not in self.transactions:
                    return t
        raise ArmsError(Err.ESYSTEM, "no free transaction id")

    def _call(self, name: str, *args):
        """A callback on the callback thread; a thread whose round is over stops waiting."""
        return self.runner.call(getattr(self.cb, name), *args, abort=_round_over)

    def handle(self, data: bytes, link: str) -> Answer:
        req = P.parse_push_request(data, self.ctx.distribution_id, self.ctx.max_message)
        if req.method is not None and P.is_async(req.method):
            tid = self._new_tid()
        else:
            tid = 0
        if not req.ok:
            log.warning("push %s refused with %d: %s", req.method or "?", req.result, req.reason)
            return Answer(P.build_error_response(req, tid))
        m = req.method
        log.info("push %s received on %s", m, link)
        if m == "push-confirmation-done":
            tid_echo = (req.transaction_id or 0) if link == "tunnel" else 0
            return Answer(P.build_confirmation_done_response(tid_echo), confirmed=True)
        if m == "md-command":
            return self._md_command(req.params)
        if m == "dump-debug":
            return self._dump_debug()
        if m == "read-module-list":
            return Answer(P.build_read_module_list_response(self.ctx.modules))
        if m == "check-transaction":
            with self.lock:
                ids = [0] + sorted(self.transactions)
            return Answer(P.build_check_transaction_response(ids))
        if m == "pull-config":
            self.ctx.trigger = "Pull requested by RS"
            self.ctx.clear_rs_endpoint = req.params.ls
            return Answer(P.build_sync_response(m, 100), end=Err.EPULL)
        if m == "reboot":
            self.ctx.trigger = "Reboot requested by RS"
            return Answer(P.build_sync_response(m, 100), end=Err.EREBOOT)
        # asynchronous methods
        if m != "configure" and not self.cb.supports(_CALLBACK_OF[m]):
            return Answer(P.build_start_response(m, tid, P.Rc.NOT_SUPPORT))
        if link == "simple" and len(self.transactions) + 1 > SIMPLE_MAX_TRANSACTIONS:
            return Answer(P.build_start_response(m, tid, P.Rc.TOO_MANY_TRANSACTION))
        if m == "configure":
            return self._configure_start(tid, req.params, link)
        tr = Transaction(tid, m, link)
        with self.lock:
            self.transactions[tid] = tr
        return Answer(P.build_start_response(m, tid, 100),
                      followup=lambda: self._execute(tr, req.params), transaction=tr)

    def finish(self, tr: Optional[Transaction]) -> None:
        if tr is not None:
            with self.lock:
                self.transactions.pop(tr.id, None)
                if tr.method == "configure":
                    self.configure_busy = False
            if tr.method == "configure":
                self.ls.configure_running = False

    # sync methods

    def _md_command(self, params: P.MdCommandParams) -> Answer:
        if not self.cb.supports("md_command"):
            return Answer(P.build_md_command_response(P.Rc.NOT_SUPPORT))
        with self.lock:
            if self.md_busy:
                return Answer(P.build_md_command_response(P.Rc.SA_BUSY))
            self.md_busy = True
        try:
            out = self._call("md_command", params.module_id, params.command)
            if not isinstance(out, (str, bytes)):
                out = "" if out is None else str(out)
            return Answer(P.build_md_command_response(100, params.module_id, out))
        except AppExecError as e:
            return Answer(P.build_md_command_response(P.Rc.COMMAND_EXECUTE_ERROR, params.module_id,
                                                      e.output if e.output else str(e)))
        except Exception as e:
            self._callback_failed("md_command", e)
            return Answer(P.build_md_command_response(P.Rc.SA_FAILURE))
        finally:
            self.md_busy = False

    def _dump_debug(self) -> Answer:
        try:
            out = self._call("dump_debug")
        except Exception as e:
            self._callback_failed("dump_debug", e)
            return Answer(P.build_dump_debug_response(P.Rc.SA_FAILURE))
        if out is None:
            out = self.ls.debug_text()
        return Answer(P.build_dump_debug_response(100, out))

    def _callback_failed(self, name: str, e: BaseException) -> None:
        self.ctx.event(LOG_ECALLBACK, f"callback {name} failed: {type(e).__name__}: {e}")

    # asynchronous methods

    def _execute(self, tr: Transaction, params) -> DoneReport:
        m = tr.method
        if m in ("read-status", "clear-status"):
            name = "get_status" if m == "read-status" else "clear_status"
            body: list = []
            whole = m == "clear-status"          # one piece per report, as libarms writes it
            for r in params.requests:
                try:
                    out = self._call(name, r.id, r.data)
                    body += P.status_report_pieces(r.id, 100, out if out is not None else "",
                                                   whole)
                except Exception as e:
                    self._callback_failed(name, e)
                    body += P.status_report_pieces(r.id, P.Rc.SA_FAILURE, "", whole)
            return DoneReport(m, tr.id, 100, body)
        if m == "read-storage":
            body = []
            kind = ConfigKind(params.storage)
            for mod in self.ctx.modules:
                try:
                    out = self._call("read_config", mod.id, kind)
                except Exception as e:
                    self._callback_failed("read_config", e)
                    out = ""
                body += P.md_config_pieces(mod.id, out if out is not None else "")
            return DoneReport(m, tr.id, 100, body)
        if m == "ping":
            try:
                r = self._call("ping", params.address, params.count, params.size)
                return DoneReport(m, tr.id, 100, P.ping_done_pieces(int(r.success), int(r.failure)))
            except Exception as e:
                self._callback_failed("ping", e)
                return DoneReport(m, tr.id, P.Rc.PUSH_FAILED, [])
        if m == "traceroute":
            try:
                hops = self._call("traceroute", params.address, params.count, params.max_hop)
                pairs = [(int(h.hop), str(h.addr)) for h in hops]
                return DoneReport(m, tr.id, 100, P.traceroute_done_pieces(pairs, params.max_hop))
            except Exception as e:
                self._callback_failed("traceroute", e)
                return DoneReport(m, tr.id, P.Rc.PUSH_FAILED, [])
        if m == "configure":
            return self._commit(tr)
        raise AssertionError(m)

    # configure (W 4.2, A 2.8)

    def _config(self, module_id: int, version: str, info: str, action: ConfigAction,
                      data: bytes = b"", flags: Frag = Frag.FIRST | Frag.FINISHED) -> None:
        self._call("config", module_id, version, info, action, data, flags)

    def _configure_start(self, tid: int, params: P.ConfigureParams, link: str) -> Answer:
        with self.lock:
            if self.configure_busy:
                return Answer(P.build_start_response("configure", tid, P.Rc.SA_BUSY))
            self.configure_busy = True
            tr = Transaction(tid, "configure", link)
            self.transactions[tid] = tr
        self.ls.configure_running = True
        result = 100
        try:
            new_ids = {m.id for m in params.modules}
            for old in list(self.ctx.modules):
                if old.id not in new_ids:
                    try:
                        self._config(old.id, "", "", ConfigAction.REMOVE_MODULE, b"", Frag.CONTINUE)
                    except Exception as e:
                        self._callback_failed("config(REMOVE_MODULE)", e)
                        result = P.Rc.COMMIT_FAILURE
                        break
            if result == 100:
                self.ctx.modules = list(params.modules)
                self.store.clear("candidate")
                versions = {m.id: m for m in params.modules}
                for cfg in params.configs:
                    mod = versions[cfg.id]
                    try:
                        self._store_fragments(mod, cfg.data)
                    except Exception as e:
                        self._callback_failed("config(PUSH_STORE_CONFIG)", e)
                        result = P.Rc.VALIDATION_FAILURE
                        break
                    self.store.put("candidate", cfg.id, cfg.data)
        except Exception:  # e.g. the store's disk failed
            log.exception("configure start failed")
            result = P.Rc.SA_FAILURE
        except BaseException:  # the round ended under it: no transaction left behind
            self.finish(tr)
            raise
        if result != 100:
            self.finish(tr)
            return Answer(P.build_start_response("configure", tid, result))
        return Answer(P.build_start_response("configure", tid, 100),
                      followup=lambda: self._execute(tr, params), transaction=tr)

    def _store_fragments(self, mod: P.ModuleInfo, data: bytes) -> None:
        frag = self.ls.fragment
        if not frag or len(data) <= frag:
            self._config(mod.id, mod.version, mod.info, ConfigAction.PUSH_STORE_CONFIG,
                               data, Frag.FIRST | Frag.FINISHED)
            return
        for i in range(0, len(data), frag):
            flags = Frag.CONTINUE
            if i == 0:
                flags |= Frag.FIRST
            if i + frag >= len(data):
                flags |= Frag.FINISHED
            self._config(mod.id, mod.version, mod.info, ConfigAction.PUSH_STORE_CONFIG,
                               data[i:i + frag], flags)

    def _commit(self, tr: Transaction) -> DoneReport:
        self.ctx.event(LOG_CONFIG_COMMIT, "commit pushed configuration")
        try:
            self._config(0, "", "", ConfigAction.PUSH_EXEC_STORED_CONFIG, b"", Frag.CONTINUE)
            self.store.commit()
            return DoneReport("configure", tr.id, 100, [])
        except ModSyncRequired:
            self.store.commit()
            self.ls.modsync = True
            return DoneReport("configure", tr.id, P.Rc.MODULE_SYNCING, [])
        except Exception as e:
            self._callback_failed("config(PUSH_EXEC_STORED_CONFIG)", e)
            if self.rollback():
                return DoneReport("configure", tr.id, P.Rc.SA_ROLLBACKED, [])
            raise ArmsError(Err.EPULL, "rollback failure")

    def rollback(self) -> bool:
        """Revert to the backup config through the callbacks; False if that failed too."""
        self.ctx.event(LOG_CONFIG_ROLLBACK, "rolling back pushed configuration")
        try:
            self._config(0, "", "", ConfigAction.PUSH_REVERT_CONFIG, b"", Frag.CONTINUE)
        except Exception as e:
            self._callback_failed("config(PUSH_REVERT_CONFIG)", e)
            self.ctx.trigger = "rollback failure"
            self.ctx.event(LOG_EROLLBACK, "rollback failed")
            return False
        self.store.revert()
        return True


# -- loop state shared by the transports ------------------------------------------------------------

class LoopState:
    """One event-loop run: its end, confirmation, heartbeat and configure flags."""

    def __init__(self, ctx: PushContext, fragment: int, cv: Optional[threading.Condition] = None):
        self.ctx = ctx
        self.cv = cv or threading.Condition()
        self.fragment = fragment
        self.retry_inf = False
        self._configure_running = False
        self.modsync = False
        #: set when a configure was acknowledged: if the confirmation that follows cannot
        #: complete within the confirmation window, the config is rolled back (the new config
        #: probably cut the device off its servers)
        self.rollback_armed = False
        self.hb = None
        self._hb_lock = threading.Lock()     # heartbeat start (push threads) against stop
        self.round_end: Optional[RoundEnd] = None
        self.tunnels_up: dict[int, bool] = {}
        self.method = ""

    @property
    def configure_running(self) -> bool:
        return self._configure_running

    @configure_running.setter
    def configure_running(self, value: bool) -> None:
        if value != self._configure_running:
            self._configure_running = value
            self.pause_heartbeat(value)

    def new_round(self) -> RoundEnd:
        self.round_end = RoundEnd(self.cv)
        return self.round_end

    def _end(self) -> Optional[RoundEnd]:
        """The round of the calling thread: its own (a round thread) or the current one."""
        return getattr(_tl, "end", None) or self.round_end

    def stop(self, result: Err) -> None:
        end = self._end()
        if end is not None:
            end.stop(result)

    @property
    def stopping(self) -> bool:
        end = self._end()
        return end is None or end.done

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``; ``_Cancelled`` as soon as the caller's round is over."""
        with self.cv:
            self.cv.wait_for(lambda: self.stopping, max(seconds, 0))
        if self.stopping:
            raise _Cancelled()

    def confirmed(self) -> None:
        if self.stopping:                    # a late thread of an ended round
            return
        self.rollback_armed = False          # the new config reaches the servers: keep it
        self.ctx.fire(Event.CONFIRMED)
        self.retry_inf = True
        with self._hb_lock:                  # the round may end meanwhile: then no heartbeat
            if not self.stopping:
                self.start_heartbeat()       # on every entry into push wait; no-op if running

    def start_heartbeat(self) -> None:
        if self.hb is not None or HeartbeatSender is None or not self.ctx.heartbeat_servers:
            return
        try:
            cb = self.ctx.callbacks
            fam = None
            if self.ctx.sa_address:
                import socket
                fam = socket.AF_INET6 if ":" in self.ctx.sa_address else socket.AF_INET
            self.hb = HeartbeatSender(self.ctx.distribution_id, self.ctx.heartbeat_servers,
                                      self.ctx.heartbeat_interval or 60, cb.hb_store_statistics,
                                      family=fam, on_callback_error=self._hb_failed)
            self.hb.start()
            self.ctx.event(LOG_HB_START, "heartbeat started")
        except Exception:
            log.exception("heartbeat could not start")
            self.hb = None

    def _hb_failed(self, e: BaseException) -> None:
        """hb_store_statistics raised (heartbeat thread): libarms redoes the confirmation
        (ARMS_EPUSH)."""
        if not self.configure_running:
            log.warning("heartbeat statistics callback failed (%s): re-confirming", e)
            end = self.round_end
            if end is not None:
                end.stop(Err.EPUSH)

    def pause_heartbeat(self, paused: bool) -> None:
        """No heartbeat while a configure runs (W 1.7), and no statistics callback either
        (A 1.6 step 1: the round is skipped entirely)."""
        if self.hb is not None:
            try:
                self.hb.pause(ask_statistics=False) if paused else self.hb.resume()
            except Exception:
                log.exception("heartbeat pause/resume failed")

    def stop_heartbeat(self) -> None:
        with self._hb_lock:
            hb, self.hb = self.hb, None
        if hb is not None:
            try:
                hb.stop()
            except Exception:
                log.exception("heartbeat stop failed")
            self.ctx.event(LOG_HB_STOP, "heartbeat stopped")

    def debug_text(self) -> str:
        up = ",".join(str(i) for i, v in sorted(self.tunnels_up.items()) if v)
        return (f"distribution-id {self.ctx.distribution_id}\nstate {self.ctx.state.name}\n"
                f"method {self.method}\ntunnels-up {up or '-'}\n"
                f"sa-address {self.ctx.sa_address or '-'}\n")


def map_server_result(code: int) -> Optional[Err]:
    """Loop-ending meaning of a server result code (W 3.4); None: not loop-ending."""
    if 200 <= code < 300:
        return Err.EPULL
    if code == 501:
        return Err.EDONTRETRY
    if code in (502, 508):
        return Err.EPULL
    if code >= 500:
        return Err.EREBOOT
    return None


def backoff(ctx: PushContext, attempt: int) -> float:
    """Exponential backoff with full jitter for tunnel reconnects."""
    base = ctx.reconnect_base if ctx.reconnect_base is not None else (ctx.rs_retry_interval or 1.0)
    return _uniform(min(ctx.reconnect_cap, base * (2 ** min(attempt, 16))))


# -- method query (W 3.5.3, A 2.6) -----------------------------------------------------------------

def push_method_query(agent: Any) -> Err:
    """Ask the pull-side proxies which push methods to use. Returns Err.OK or an end code."""
    ctx = context_of(agent)
    try:
        return _method_query(ctx)
    finally:
        _write_back(agent, ctx)


def _rotated(urls: Sequence[str], first: int) -> list[str]:
    urls = list(urls)
    if not urls:
        return []
    first = first % len(urls)
    return urls[first:] + urls[:first]


def _local_address(url_s: str) -> Optional[str]:
    """The local address the system would use towards ``url_s`` (a UDP connect sends nothing)."""
    import socket
    try:
        u = P.parse_url(url_s)
        fam = socket.AF_INET6 if u.family == 6 else socket.AF_INET
        with socket.socket(fam, socket.SOCK_DGRAM) as s:
            s.connect((u.host, u.port))
            return s.getsockname()[0]
    except (OSError, ProtocolError):
        return None


def retry_wait(base: float, result: int, n: int) -> float:
    """W 6.3 retry waits."""
    if 200 <= result < 300:
        return base * 120
    if 300 <= result < 400:
        return base * n * n
    return base


def _method_query(ctx: PushContext) -> Err:
    _tl.ctx = ctx
    ctx.methods, ctx.tunnel_urls, ctx.echo_interval = (), (), P.DEFAULT_ECHO_INTERVAL
    urls = _rotated(ctx.pull_urls, ctx.pull_index)
    if not urls:
        ctx.trigger = "push server not found"
        return Err.ESYSTEM
    offered = [P.PUSH_METHOD_TUNNEL] if ctx.https_proxy else [P.PUSH_METHOD_SIMPLE, P.PUSH_METHOD_TUNNEL]
    body = P.build_method_query_request(ctx.distribution_id, ctx.description, offered)
    try:
        sslctx = ctx.client_ssl()
    except ConfigError as e:
        log.error("method query impossible: %s", e)
        ctx.trigger = "internal error(socket)"
        return Err.ESYSTEM
    for n in range(ctx.rs_retry_max + 1):
        if n:
            time.sleep(retry_wait(ctx.rs_retry_interval, 0, n))
        for url_s in urls:
            try:
                url = P.parse_url(url_s)
                if url.scheme != "https":
                    continue
                ans, local = _exchange(url, build_form_a(url, ctx.distribution_id, ctx.rs_key, body),
                                             sslctx, ctx.io_timeout, ctx.tls_args())
                if ans.status >= 400:
                    log.warning("method query to %s: HTTP %d", url_s, ans.status)
                    continue
                mq = P.parse_method_query_response(ans.body)
            except P.TooManyEntries as e:
                log.error("method query to %s: %s", url_s, e)
                return Err.EREBOOT
            except NET_ERRORS as e:
                log.warning("method query to %s failed: %s", url_s, e or type(e).__name__)
                continue
            code = mq.result_code
            if 100 <= code < 200 or code == 507:
                if code == 507:
                    mq = P.MethodQueryAnswer(code)
                ctx.methods, ctx.tunnel_urls, ctx.echo_interval = mq.methods, mq.tunnel_urls, mq.echo_interval
                ctx.sa_address = local
                log.info("push methods %s, %d tunnel URL(s), echo %s s, SA address %s",
                         ",".join(mq.methods) or "-", len(mq.tunnel_urls), mq.echo_interval, local)
                return Err.OK
            end = map_server_result(code)
            if end is not None:
                return end
    ctx.trigger = "retry is over"
    return Err.EPULL


def _exchange(url: P.Url, request: bytes, sslctx: ssl.SSLContext, timeout: float, tls: dict):
    """One request/answer; also returns the local address of the connection."""
    from .transport.simple import close_tls, connect_tls, request as send_request
    sock = connect_tls(url, sslctx, timeout, **tls)
    try:
        local = sock.getsockname()[0]
        return send_request(sock, request, timeout), local
    finally:
        close_tls(sock, 0)


# -- the event loop (A 2.7) -----------------------------------------------------------------------

def event_loop(agent: Any, port: int = 0, fragment: int = 0) -> Err:
    """Run push wait until a loop-ending outcome; returns its Err code (never OK)."""
    if not 0 <= port <= 65535:
        raise ArmsError(Err.EINVAL, f"port {port} outside 0..65535")
    ctx = context_of(agent)
    try:
        if getattr(ctx.callbacks, "version", 7) < 5:
            # API versions before 5: the event loop runs the method query itself (A 2.7)
            rc = _method_query(ctx)
            if rc != Err.OK:
                return rc
        return EventLoop(ctx, port or 10443, fragment).run()
    finally:
        _write_back(agent, ctx)


class EventLoop:
    #: how long the end of a round waits for its round thread (it is woken at once; a
    #: connect or TLS handshake under way is not, and is left to end on its own)
    ROUND_JOIN = 1.0

    def __init__(self, ctx: PushContext, port: int, fragment: int):
        self.ctx = ctx
        self.cv = threading.Condition()      # RLock: request_stop may run in a signal handler
        self.stopped: Optional[Err] = None
        self.rollbacks = 0
        self.port = port
        self.ls = LoopState(ctx, fragment, self.cv)
        self.runner = CallbackRunner(ctx.callback_timeout, self.cv)
        self.dispatcher = Dispatcher(ctx, self.runner, self.ls)
        self._wd_gen = 0
        self._closing = False
        # the loop's thread waits in poll(): on this pipe (stop requests), the round's pipe
        # and, in the main thread, the signal wake-up pipe (see _signal_wakeup)
        self._stop_r, self._stop_w = os.pipe()
        self._sig_r = -1
        self._sig_slice: Optional[float] = None

    def _signal_wakeup(self) -> None:
        """In the main thread: a signal (SIGTERM to armsd) may be delivered to any thread, and
        Python runs its handler in the main thread only once that thread wakes up. As asyncio
        does, point ``signal.set_wakeup_fd`` at a pipe the loop polls, unless the application
        has its own there (then the loop's waits are sliced to 1 s)."""
        if threading.current_thread() is not threading.main_thread():
            return
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        try:
            old = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        except (ValueError, OSError):
            old = None
        if old == -1:
            self._sig_r, self._sig_w = r, w
            return
        if old is not None:
            signal.set_wakeup_fd(old)
            self._sig_slice = 1.0
        os.close(r)
        os.close(w)

    def _signal_wakeup_off(self) -> None:
        if self._sig_r < 0:
            return
        try:
            old = signal.set_wakeup_fd(-1)
            if old != self._sig_w:             # someone replaced ours meanwhile: keep theirs
                signal.set_wakeup_fd(old)
        except (ValueError, OSError):
            pass
        os.close(self._sig_r)
        os.close(self._sig_w)
        self._sig_r = -1

    def _sleep(self, seconds: float, end: Optional[RoundEnd] = None) -> None:
        """The loop's thread: wait up to ``seconds`` for a stop request, the end of ``end``
        or a signal (whose handler then runs)."""
        p = select.poll()
        p.register(self._stop_r, select.POLLIN)
        if end is not None:
            p.register(end.wake_fd, select.POLLIN)
        if self._sig_r >= 0:
            p.register(self._sig_r, select.POLLIN)
        if self._sig_slice is not None:
            seconds = min(seconds, self._sig_slice)
        for fd, _ in p.poll(max(0, int(seconds * 1000) + 1)):
            if fd == self._sig_r:
                try:
                    os.read(fd, 512)
                except OSError:
                    pass

    def run(self) -> Err:
        ctx = self.ctx
        _tl.ctx = ctx
        self._signal_wakeup()
        ctx._running = (self.cv, self)
        try:
            if not ctx.methods:
                ctx.trigger = "no push method"
                return self._end(Err.EPULL)
            try:
                ctx.client_ssl()
            except ConfigError as e:
                log.error("push phase impossible: %s", e)
                return self._end(Err.ESYSTEM)
            while True:
                result: Err = Err.OK
                for m in ctx.methods:
                    repeats = 0
                    while True:
                        started = time.monotonic()
                        if m == P.PUSH_METHOD_SIMPLE:
                            if ctx.https_proxy:
                                result = Err.ETIMEOUT
                                break
                            self.ls.method = m
                            ctx.event(LOG_PUSH_SIMPLE, "push method: https-simple")
                            result = self._round(SimpleRound(self))
                        else:
                            if not ctx.tunnel_urls:
                                ctx.trigger = "tunnel URL not found"
                                result = Err.ETIMEOUT
                                break
                            self.ls.method = m
                            ctx.event(LOG_PUSH_TUNNEL, "push method: https-tunnel")
                            result = self._round(TunnelRound(self))
                        if result == Err.ETIMEOUT and self.ls.rollback_armed:
                            if self.rollback_unconfirmed():
                                continue          # same method again, with the old config
                        if result in (Err.ETIMEOUT, Err.EPUSH) and self.ls.retry_inf \
                                and not self.ls.configure_running:
                            if time.monotonic() - started < 1.0:     # never spin
                                self._pause(backoff(ctx, repeats))
                            repeats += 1
                            continue
                        if result == Err.EPUSH and self.rollbacks and not self.ls.retry_inf:
                            self.rollbacks = 0    # after a rollback: once more, same method
                            continue
                        break
                    if result != Err.ETIMEOUT:
                        break
                if result in (Err.ETIMEOUT, Err.OK):
                    result = Err.EPULL
                if result != Err.EPUSH:
                    return self._end(result)
        finally:
            ctx._running = None
            with self.cv:
                self._closing = True          # the confirmation watchdog leaves
                self.cv.notify_all()
            self.ls.stop_heartbeat()
            self.runner.close()
            self._signal_wakeup_off()
            with self.cv:
                w, self._stop_w = self._stop_w, -1
            os.close(w)
            os.close(self._stop_r)

    def request_stop(self, result: Err) -> None:
        """Thread-safe (and safe in a signal handler of the loop's thread): end the loop with
        ``result`` (e.g. armsd on SIGTERM)."""
        with self.cv:
            self.stopped = result
            self.cv.notify_all()
            if self._stop_w >= 0:
                try:
                    os.write(self._stop_w, b"x")
                except OSError:
                    pass
        end = self.ls.round_end
        if end is not None:
            end.stop(result)

    def _pause(self, seconds: float) -> None:
        """Wait between rounds; a stop request cuts it short."""
        deadline = time.monotonic() + seconds
        while self.stopped is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._sleep(left)

    def _end(self, result: Err) -> Err:
        # the state is PUSH_REBOOT already when a round ran (A 2.2); early errors leave it
        log.info("event loop ends with %s", result.name)
        return result

    def _round(self, rnd) -> Err:
        end = self.ls.new_round()
        if self.stopped is not None:
            end.close()
            return self.stopped
        th = _spawn(rnd.main, "libarms-push-round", end=end)
        try:
            self._app_events(end)
            if rnd.error is not None:
                raise rnd.error
            return end.result  # type: ignore[return-value]
        finally:
            end.stop(Err.EPULL)               # no-op unless an exception got here
            rnd.shutdown()
            th.join(self.ROUND_JOIN)
            rnd.after_join()
            # the push scheduler ended (A 2.2, 1.7): PUSH_REBOOT, heartbeat stopped; a
            # re-confirmation goes PUSH_REBOOT -> PUSH_SENDREADY -> PUSH_WAIT
            self.ls.stop_heartbeat()
            self.ctx.fire(Event.LOOP_END)
            if th.is_alive():
                log.debug("push round thread still busy (connecting): left to end on its own")
            # its threads were woken (the pipe is readable); one still to come back finds its
            # round over, and a wake_fd of -1 counts as woken (a loop runs for months: no fd
            # may be left behind per round)
            end.close()

    def _app_events(self, end: RoundEnd) -> None:
        """The loop's thread during a round: the app-event timer, else just the wait."""
        cb = self.ctx.callbacks
        if not cb.supports("app_event"):
            while not end.done:
                self._sleep(3600, end)
            return
        main = threading.current_thread() is threading.main_thread()
        while not end.done:
            deadline = time.monotonic() + self.ctx.app_event_interval
            while not end.done and time.monotonic() < deadline:
                self._sleep(deadline - time.monotonic(), end)
            if end.done:
                return
            try:
                r = self.runner.call(cb.app_event, abort=lambda: end.done,
                                     slice=0.2 if main else None)
            except _Cancelled:
                return
            except Exception as e:
                log.warning("app_event callback failed: %s", e)
                continue
            if r == Err.EPULL:
                end.stop(Err.EPULL)
            elif r and not self.ls.configure_running:
                end.stop(Err.EPUSH)

    # done-request delivery and the configure tail, shared by both transports

    def finish_transaction(self, answer: Answer, deliver: Callable,
                           reconfirm: Optional[Callable[[], None]] = None) -> None:
        """Run an asynchronous push after its start answer: execute, send the done request
        through ``deliver(pieces) -> DoneAnswer|None`` and handle configure's rollback."""
        tr = answer.transaction
        try:
            try:
                report: DoneReport = answer.followup()  # type: ignore[misc]
            except ArmsError as e:       # rollback failure
                self.ls.stop(Err(e.code))
                return
            if tr.method != "configure":
                ans = deliver(self._done_pieces(report))
                if ans is not None:
                    end = map_server_result(ans.result_code)
                    if end is not None:
                        self.ls.stop(end)
                return
            self._configure_done(report, deliver, reconfirm)
        except Exception:
            log.exception("push %s failed", tr.method if tr else "?")
        finally:
            self.dispatcher.finish(tr)

    def _arm_confirm_watchdog(self) -> None:
        with self.cv:
            self._wd_gen += 1
            gen = self._wd_gen
            self.cv.notify_all()
        ctx = self.ctx

        def watch():
            _tl.ctx = ctx
            self._confirm_watchdog(gen)
        threading.Thread(target=watch, name="libarms-confirm-watchdog", daemon=True).start()

    def _confirm_watchdog(self, gen: int) -> None:
        with self.cv:
            self.cv.wait_for(lambda: self._wd_gen != gen or self._closing, self.ctx.confirm_timeout)
            if self._wd_gen != gen or self._closing:
                return                        # re-armed, or the loop is over
        if self.ls.rollback_armed:
            try:
                self.rollback_unconfirmed()
            except Exception:
                log.exception("rollback after a failed confirmation failed")
                self.ls.stop(Err.EPULL)
                return
            self.ls.stop(Err.EPUSH)           # start over: fresh connections, old config

    def rollback_unconfirmed(self) -> bool:
        """The confirmation after a configure did not complete within the window: go back to
        the previous config through the callbacks (log 74) and try again with it."""
        with self.cv:
            if not self.ls.rollback_armed:
                return False
            self.ls.rollback_armed = False
        self.ctx.event(LOG_CONFIG_ROLLBACK, "confirmation failed after configure: rolling back "
                                            "to the previous configuration")
        if not self.dispatcher.rollback():
            self.ls.stop(Err.EPULL)
            return False
        self.rollbacks += 1
        return True

    def _done_pieces(self, r: DoneReport) -> list:
        return P.build_done_request(r.method, self.ctx.distribution_id, self.ctx.description,
                                    r.transaction_id, r.result, r.body)

    def _configure_done(self, report: DoneReport, deliver: Callable,
                        reconfirm: Optional[Callable[[], None]]) -> None:
        ctx = self.ctx
        rolled_back = report.result == P.Rc.SA_ROLLBACKED
        attempts = 0
        while not self.ls.stopping:
            ans = None
            for n in range(ctx.rs_retry_max + 1):
                if n:
                    self.ls.sleep(retry_wait(ctx.rs_retry_interval, report.result, n))
                ans = deliver(self._done_pieces(report))
                if ans is not None:
                    break
            code = ans.result_code if ans is not None else None
            if code is not None and 100 <= code < 200:
                if report.result == P.Rc.MODULE_SYNCING:
                    self.ls.stop(Err.EREBOOT)
                else:
                    self.ls.retry_inf = False
                    self.ls.configure_running = False
                    self.ls.rollback_armed = True
                    self._arm_confirm_watchdog()
                    if reconfirm is not None:     # tunnel: re-confirm on the open connections
                        reconfirm()
                    else:                         # simple: new round, the address may have changed
                        self.ls.stop(Err.EPUSH)
                return
            if code is not None and code >= 500:
                self.ls.stop(map_server_result(code) or Err.EREBOOT)
                return
            # undeliverable, or 2xx/3xx/4xx
            if not rolled_back:
                if not self.dispatcher.rollback():
                    self.ls.stop(Err.EPULL)
                    return
                rolled_back = True
                report = DoneReport(report.method, report.transaction_id, P.Rc.SA_ROLLBACKED, [])
                continue
            if code is None or 200 <= code < 300:
                ctx.trigger = "rollback failure"
                ctx.event(LOG_EROLLBACK, "rollback failure: server did not accept the 414 report")
                self.ls.stop(Err.EPULL)
                return
            attempts += 1
            if attempts > max(ctx.rs_retry_max, 1):
                ctx.trigger = "rollback failure"
                self.ls.stop(Err.EPULL)
                return
            self.ls.sleep(retry_wait(ctx.rs_retry_interval, report.result, attempts))


class _Slot:
    """A done answer awaited by a push thread, filled by the tunnel's reader."""
    __slots__ = ("value", "done")

    def __init__(self):
        self.value: Optional[bytes] = None
        self.done = False


# -- https-tunnel (W 5) ---------------------------------------------------------------------------

class _Round:
    """What both kinds of round share: the round thread's body (:meth:`main`) ends the loop's
    round with what :meth:`run` returns (ESYSTEM, the error kept for the loop's thread to
    re-raise, when it raises)."""

    def __init__(self, el: EventLoop):
        self.el = el
        self.ctx = el.ctx
        self.ls = el.ls
        self.error: Optional[BaseException] = None

    def run(self) -> Err:
        raise NotImplementedError

    def _after_run(self) -> None:
        """Clean-up on the round thread once :meth:`run` returned or raised."""

    def main(self) -> None:
        try:
            result = self.run()
        except _Cancelled:
            return
        except BaseException as e:        # re-raised by the loop's thread
            self.error = e
            result = Err.ESYSTEM
        finally:
            self._after_run()
        self.ls.stop(result)


class TunnelRound(_Round):
    """One https-tunnel round: the round thread is tunnel 0's worker; each further tunnel URL
    gets a worker thread. The round ends (ETIMEOUT) when every worker gave up."""

    def __init__(self, el: EventLoop):
        super().__init__(el)
        self.workers: list[TunnelWorker] = []
        self._alive = 0

    def run(self) -> Err:
        ctx = self.ctx
        sslctx = ctx.client_ssl()
        fam = (6 if ":" in ctx.sa_address else 4) if ctx.sa_address else None
        for i, u in enumerate(ctx.tunnel_urls):
            try:
                url = P.parse_url(u)
            except ProtocolError as e:
                log.warning("tunnel URL %r dropped: %s", u, e)
                continue
            if url.scheme != "https" or (fam is not None and url.family != fam):
                log.warning("tunnel URL %r dropped (scheme or address family)", u)
                continue
            self.workers.append(TunnelWorker(self, i, url, sslctx))
        if not self.workers:
            ctx.trigger = "tunnel URL not found"
            return Err.ETIMEOUT
        cv = self.el.cv
        with cv:
            self._alive = len(self.workers)
        for w in self.workers[1:]:
            _spawn(self._work, f"libarms-tunnel-{w.index}", w)
        self._work(self.workers[0])
        with cv:                          # like gathering every worker
            while self._alive and not self.ls.stopping:
                cv.wait(3600)
        if not self.ls.stopping:
            ctx.trigger = "retry is over"
        return Err.ETIMEOUT

    def _work(self, w: "TunnelWorker") -> None:
        try:
            w.run()
        except _Cancelled:
            pass
        except Exception:
            log.exception("tunnel[%d] failed", w.index)
        finally:
            with self.el.cv:
                self._alive -= 1
                self.el.cv.notify_all()

    def reconfirm_all(self) -> None:
        """After a configure: every tunnel runs the confirmation again on its connection (W 5.5)."""
        for w in self.workers:
            w.reconfirm()

    def shutdown(self) -> None:
        end = self.ls.round_end
        result = end.result if end is not None else None
        graceful = result in (Err.EREBOOT, Err.EPULL, Err.EDONTRETRY)
        for w in list(self.workers):
            w.close(graceful)

    def after_join(self) -> None:
        pass


class TunnelWorker:
    """One tunnel: connect, confirm, serve, reconnect with backoff (never gives up once
    confirmed, unless a configure is running). Runs on its own thread; pushes that arrive
    are handled on short-lived threads (a long callback never stalls reads or the echo)."""

    def __init__(self, rnd: TunnelRound, index: int, url: P.Url, sslctx: ssl.SSLContext):
        self.rnd = rnd
        self.el = rnd.el
        self.ctx = rnd.ctx
        self.ls = rnd.ls
        self.cv = rnd.el.cv
        self.end = rnd.ls.round_end
        self.index = index
        self.url = url
        self.sslctx = sslctx
        self.conn: Optional[TunnelConnection] = None
        self.confirmed_once = False
        self.pending_done: dict[int, _Slot] = {}
        self._connected = False
        self.resume_configure = False
        self.confirmed_recently = False

    def _set_connected(self, value: bool) -> None:
        with self.cv:
            self._connected = value
            self.cv.notify_all()

    def run(self) -> None:
        ctx = self.ctx
        failures = 0
        while not self.ls.stopping:
            conn = None
            try:
                conn = TunnelConnection.open(self.url, self.sslctx, ctx.distribution_id, ctx.rs_key,
                                             ctx.io_timeout, wake=self.end.wake_fd, **ctx.tls_args())
                if self.ls.stopping:
                    conn.abort()
                    conn.dispose()
                    return
                self.conn = conn
                ctx.event(LOG_TUNNEL_CONNECTED, f"tunnel[{self.index}] connected to {self.url.netloc}")
                if self.resume_configure:
                    # W 5.5: in the middle of a configure the done request goes first on the
                    # new connection, without a confirmation
                    self.resume_configure = False
                    self.ls.tunnels_up[self.index] = True
                    self._set_connected(True)
                    self._serve(conn)
                elif self._confirm(conn):
                    failures = 0
                    self._set_connected(True)
                    self._serve(conn)
            except TunnelClosed as e:
                (log.debug if self.ls.stopping else log.warning)(
                    "tunnel[%d] %s: %s", self.index, self.url.netloc, e)
            except _Cancelled:
                raise
            except Exception:
                log.exception("tunnel[%d] failed", self.index)
            finally:
                self._set_connected(False)
                if self.ls.tunnels_up.get(self.index):
                    ctx.event(LOG_TUNNEL_CLOSED, f"tunnel[{self.index}] closed")
                self.ls.tunnels_up[self.index] = False
                if conn is not None and not self.ls.stopping:
                    conn.abort()              # the round's end closes it (gracefully or not)
                    conn.dispose()
                with self.cv:
                    for slot in self.pending_done.values():
                        slot.done = True
                    self.pending_done.clear()
                    self.cv.notify_all()
            if self.ls.stopping:
                return
            if self.confirmed_recently:      # confirmed again on this connection (after configure)
                self.confirmed_recently = False
                failures = 0
            if not self.resume_configure:     # the drop after configure-start is on purpose
                failures += 1
            unlimited = (self.ls.retry_inf or self.confirmed_once) and not self.ls.configure_running
            if not unlimited and failures > ctx.rs_retry_max:
                log.warning("tunnel[%d] gives up after %d attempts", self.index, failures)
                return
            delay = ctx.configure_reconnect_wait if self.resume_configure else backoff(ctx, failures - 1)
            ctx.event(LOG_TUNNEL_RETRY, f"tunnel[{self.index}] reconnects in {delay:.2f} s")
            self.ls.sleep(delay)

    def _confirm(self, conn: TunnelConnection) -> bool:
        """push-confirmation on this tunnel (W 5.3)."""
        ctx = self.ctx
        ctx.fire(Event.CONFIRM_START)
        ctx.event(LOG_CONFIRM_START, f"tunnel[{self.index}] push confirmation start")
        conn.send([P.build_confirmation_start_request(ctx.distribution_id, ctx.description,
                                                       P.PUSH_METHOD_TUNNEL)], ctx.io_timeout)
        asm = MessageAssembler(ctx.max_message)
        step = "start"
        deadline = time.monotonic() + ctx.confirm_timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TunnelClosed(f"confirmation step {step!r} timed out")
            chunks = conn.read_chunks(left)
            if self.ls.stopping:
                raise _Cancelled()
            for c in chunks:
                if c.kind is not ChunkKind.DATA:
                    continue
                msg = asm.feed(c)
                if msg is None:
                    continue
                if step == "start":
                    try:
                        a = P.parse_confirmation_start_response(msg)
                    except ProtocolError as e:
                        raise TunnelClosed(f"bad confirmation answer: {e}") from None
                    end = map_server_result(a.result_code)
                    if a.result_code == 507:
                        end = Err.EPULL
                    if end is not None:       # fatal confirm-start answer (A 2.2)
                        ctx.fire(Event.FAIL)
                        self.ls.stop(end)
                        return False
                    if not 100 <= a.result_code < 200 or a.transaction_id is None:
                        raise TunnelClosed(f"confirmation refused ({a.result_code})")
                    step = "done"
                    deadline = time.monotonic() + ctx.confirm_timeout
                    continue
                ans = self.el.dispatcher.handle(msg, "tunnel")
                conn.send(ans.pieces, ctx.io_timeout)
                if ans.confirmed:
                    self.confirmed_once = True
                    self.ls.tunnels_up[self.index] = True
                    ctx.event(LOG_CONFIRM_DONE, f"tunnel[{self.index}] push confirmation done")
                    ctx.event(LOG_TUNNEL_READY, f"tunnel[{self.index}] ready to push")
                    self.ls.confirmed()
                    return True
                raise TunnelClosed("server sent something else than push-confirmation-done")

    def _serve(self, conn: TunnelConnection) -> None:
        """Push wait on this tunnel: route messages, answer pushes, keep the echo going. The
        only wake-ups are the peer's bytes, the echo interval and the round's end."""
        asm = MessageAssembler(self.ctx.max_message)
        interval = max(float(self.ctx.echo_interval), 0.05)
        outstanding = False
        next_echo = time.monotonic() + interval
        while True:
            left = next_echo - time.monotonic()
            chunks = conn.read_chunks(left) if left > 0 else []
            if self.ls.stopping:
                return
            if time.monotonic() >= next_echo:
                if outstanding:
                    raise TunnelClosed("echo-request not answered within the echo interval")
                conn.send_echo()
                outstanding = True
                next_echo = time.monotonic() + interval
            for c in chunks:
                if c.kind is ChunkKind.ECHO_RESPONSE:
                    outstanding = False
                    continue
                if c.kind is not ChunkKind.DATA:
                    continue
                try:
                    msg = asm.feed(c)
                except ProtocolError as e:
                    raise TunnelClosed(str(e)) from None
                if msg is not None:
                    self._route(msg)

    def reconfirm(self) -> None:
        conn = self.conn
        if conn is None or conn.closed:
            return
        ctx = self.ctx
        ctx.event(LOG_CONFIRM_START, f"tunnel[{self.index}] push confirmation start (again)")
        try:
            conn.send([P.build_confirmation_start_request(
                ctx.distribution_id, ctx.description, P.PUSH_METHOD_TUNNEL)], ctx.io_timeout)
        except TunnelClosed as e:
            log.warning("tunnel[%d] re-confirmation not sent: %s", self.index, e)

    def _confirmation_answer(self, msg: bytes) -> None:
        try:
            a = P.parse_confirmation_start_response(msg)
        except ProtocolError as e:
            log.warning("tunnel[%d] bad confirmation answer: %s", self.index, e)
            a = P.ConfirmationStartAnswer(0, None)
        end = map_server_result(a.result_code) if a.result_code else None
        if a.result_code == 507:
            end = Err.EPULL
        if end is not None:                   # fatal confirm-start answer (A 2.2)
            self.ctx.fire(Event.FAIL)
            self.ls.stop(end)
        elif not (100 <= a.result_code < 200 and a.transaction_id is not None):
            log.warning("tunnel[%d] re-confirmation refused (%d): rebuilding", self.index, a.result_code)
            if self.conn is not None:
                self.conn.abort()

    def _route(self, msg: bytes) -> None:
        """A done answer goes to its transaction (W 5.4 rule 2); anything else is a push."""
        if b"<arms-response" in msg[:64] and b'type="push-confirmation-start"' in msg[:96]:
            self._confirmation_answer(msg)
            return
        tid = P.transaction_id_of(msg) if b"<arms-response" in msg[:64] else None
        if tid is not None:
            with self.cv:
                slot = self.pending_done.pop(tid, None)
                if slot is not None:
                    slot.value, slot.done = msg, True
                    self.cv.notify_all()
                    return
        _spawn(self._push, "libarms-push-op", msg)

    def _push(self, msg: bytes) -> None:
        ctx = self.ctx
        ans = self.el.dispatcher.handle(msg, "tunnel")
        conn = self.conn
        try:
            if conn is None:
                raise TunnelClosed("no connection")
            conn.send(ans.pieces, ctx.io_timeout)
        except TunnelClosed as e:
            log.warning("tunnel[%d] answer lost: %s", self.index, e)
            self.el.dispatcher.finish(ans.transaction)
            return
        if self.ls.stopping:
            self.el.dispatcher.finish(ans.transaction)
            return
        if ans.confirmed:
            self.confirmed_recently = True
            self.ls.confirmed()
            return
        if ans.end is not None:
            self.ls.stop(ans.end)
            return
        if ans.followup is not None:
            if ans.transaction is not None and ans.transaction.method == "configure":
                # W 5.5: after the configure-start answer libarms drops this tunnel (no
                # last-chunk), commits, and reconnects after 1 s to send the done request
                self.resume_configure = True
                self._set_connected(False)
                conn.abort()
            self.el.finish_transaction(ans, lambda pieces: self._deliver(ans.transaction, pieces),
                                       self.rnd.reconfirm_all)

    def _deliver(self, tr: Transaction, pieces: list) -> Optional[P.DoneAnswer]:
        """Send a done request on this tunnel (waiting for a live connection) and wait for the
        matching done answer."""
        ctx = self.ctx
        cv = self.cv
        with cv:
            cv.wait_for(lambda: self._connected or self.ls.stopping, ctx.done_wait)
            if self.ls.stopping:
                raise _Cancelled()
            if not self._connected:
                return None
            conn = self.conn
            slot = _Slot()
            self.pending_done[tr.id] = slot
        try:
            conn.send(pieces, ctx.io_timeout)  # type: ignore[union-attr]
            with cv:
                cv.wait_for(lambda: slot.done or self.ls.stopping, ctx.done_wait)
            if not slot.done and self.ls.stopping:
                raise _Cancelled()
        except TunnelClosed:
            return None
        finally:
            with cv:
                self.pending_done.pop(tr.id, None)
        raw = slot.value
        if raw is None:
            return None
        try:
            return P.parse_done_response(raw, tr.method)
        except ProtocolError as e:
            log.warning("tunnel[%d] unparsable done answer: %s", self.index, e)
            if conn is not None:
                conn.abort()      # W 5.4: an unparsable done answer rebuilds the tunnel
            return None

    def close(self, graceful: bool) -> None:
        conn = self.conn
        if conn is None:
            return
        if graceful and not conn.closed:
            conn.close()
        else:
            conn.abort()
            conn.dispose()


# -- https-simple (W 2.5, A 2.7 SIMPLE_ROUND) ------------------------------------------------------

def _listen(host: str, port: int) -> list:
    """Listening sockets for ``host`` (each address it has), non-blocking, backlog 5."""
    h = host.encode("ascii") if host.isascii() else host     # bytes: no "idna" codec loaded
    socks: list = []
    try:
        seen = set()
        for fam, typ, proto, _, addr in socket.getaddrinfo(h, port, type=socket.SOCK_STREAM,
                                                           flags=socket.AI_PASSIVE):
            if (fam, addr) in seen:
                continue
            seen.add((fam, addr))
            s = socket.socket(fam, typ, proto)
            socks.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if fam == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind(addr)
            s.listen(5)
            s.setblocking(False)
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks


class SimpleRound(_Round):
    """One https-simple round: the round thread listens (``poll`` on the listening sockets and
    the round's wake-up pipe); each connection is served on its own short-lived thread."""

    def __init__(self, el: EventLoop):
        super().__init__(el)
        self.listeners: list = []
        self.confirmed = False
        self.sslctx: Optional[ssl.SSLContext] = None
        self.last_result_url: Optional[str] = None
        self._lock = threading.Lock()
        self._conns: dict[int, socket.socket] = {}

    def _after_run(self) -> None:
        self._close_listeners()

    def _close_listeners(self) -> None:
        with self._lock:
            socks, self.listeners = self.listeners, []
        for s in socks:
            s.close()

    def run(self) -> Err:
        ctx = self.ctx
        urls = _rotated(ctx.pull_urls, ctx.pull_index)
        if not urls:
            ctx.trigger = "RS not found"
            return Err.ETIMEOUT
        if not (ctx.sa_cert_pem and ctx.sa_key_pem):
            log.error("https-simple needs the SA certificate and key from the RS")
            return Err.ETIMEOUT
        self.sslctx = pushtls.server_context(ctx.sa_cert_pem, ctx.sa_key_pem, ctx.rs_ca_pem,
                                             ctx.time_floor)
        v6 = bool(ctx.sa_address and ":" in ctx.sa_address)
        host = ctx.listen_host or ("::" if v6 else "0.0.0.0")
        for attempt in range(ctx.bind_attempts):
            try:
                socks = _listen(host, self.el.port)
                with self._lock:
                    self.listeners = socks
                break
            except OSError as e:
                log.warning("https-simple listener on port %d: %s", self.el.port, e)
                if attempt + 1 < ctx.bind_attempts:
                    self.ls.sleep(ctx.bind_retry_wait)
        if not self.listeners:
            return Err.EPULL
        now = _local_address(urls[0])
        if now and ctx.sa_address and now != ctx.sa_address:
            ctx.event(LOG_ENDPOINT_CHANGED, f"SA address changed {ctx.sa_address} -> {now}: "
                                            "announcing the new push endpoint")
            ctx.sa_address = now
        addr = ctx.sa_address or now or "127.0.0.1"
        endpoint = f"https://[{addr}]:{self.el.port}/" if ":" in addr else f"https://{addr}:{self.el.port}/"
        ctx.fire(Event.CONFIRM_START)
        ctx.event(LOG_CONFIRM_START, f"push confirmation start, endpoint {endpoint}")
        body = P.build_confirmation_start_request(ctx.distribution_id, ctx.description,
                                                  P.PUSH_METHOD_SIMPLE, endpoint)
        client = ctx.client_ssl()
        for u in urls:
            _spawn(self._confirm_start, "libarms-confirm-start", u, body, client)
        wake = _tl.end.wake_fd
        if wake < 0 or self.ls.stopping:
            return Err.ETIMEOUT
        poller = select.poll()
        by_fd = {}
        for s in self.listeners:
            by_fd[s.fileno()] = s
            poller.register(s, select.POLLIN)
        poller.register(wake, select.POLLIN)
        deadline: Optional[float] = time.monotonic() + ctx.confirm_timeout
        while True:
            if self.ls.stopping:
                return Err.ETIMEOUT
            if deadline is not None:
                if self.confirmed:
                    deadline = None       # serve until the round is stopped
                elif time.monotonic() >= deadline:
                    ctx.event(LOG_ENETTIMEOUT, "confirmation timeout")
                    return Err.ETIMEOUT
            wait_ms = -1 if deadline is None else max(0, int((deadline - time.monotonic()) * 1000) + 1)
            for fd, _ev in poller.poll(wait_ms):
                s = by_fd.get(fd)
                if s is None:
                    continue              # the wake-up pipe: checked at the top
                try:
                    conn, peer = s.accept()
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as e:
                    log.warning("https-simple accept failed: %s", e)
                    continue
                with self._lock:
                    busy = len(self._conns) >= SIMPLE_MAX_CONNECTIONS
                    if not busy:
                        self._conns[id(conn)] = conn
                if busy:
                    log.warning("https-simple connection from %s refused: %d connections open",
                                peer[0], SIMPLE_MAX_CONNECTIONS)
                    conn.close()
                    continue
                _spawn(self._client, "libarms-simple-conn", conn)

    def _confirm_start(self, url_s: str, body: bytes, client: ssl.SSLContext) -> None:
        ctx = self.ctx
        try:
            url = P.parse_url(url_s)
            if url.scheme != "https":
                return
            ans = exchange(url, build_form_b(url, ctx.distribution_id, ctx.rs_key, [body]),
                           client, ctx.io_timeout, **ctx.tls_args())
            if ans.status >= 400:
                log.warning("confirmation start to %s: HTTP %d", url_s, ans.status)
                return
            a = P.parse_confirmation_start_response(ans.body)
        except NET_ERRORS as e:
            log.warning("confirmation start to %s failed: %s", url_s, e or type(e).__name__)
            return
        if self.ls.stopping:
            return
        if a.result_code == 507:
            self.ls.stop(Err.EPULL)
            return
        end = map_server_result(a.result_code)
        if end is not None:
            ctx.fire(Event.FAIL)
            self.ls.stop(end)

    def _client(self, sock: socket.socket) -> None:
        key = id(sock)          # registered by the listener
        try:
            sock.setblocking(True)
            sock.settimeout(self.ctx.io_timeout)          # bounds the TLS handshake too
            try:
                tls = self.sslctx.wrap_socket(sock, server_side=True)  # type: ignore[union-attr]
            except (OSError, ssl.SSLError) as e:
                log.debug("https-simple TLS handshake failed: %s", e or type(e).__name__)
                sock.close()
                return
            with self._lock:
                self._conns[key] = tls
            self._serve_client(tls)
        finally:
            with self._lock:
                self._conns.pop(key, None)

    def _serve_client(self, tls: ssl.SSLSocket) -> None:
        ctx = self.ctx
        answer: Optional[Answer] = None
        req = None
        try:
            parser = SimpleRequestParser(ctx.distribution_id, ctx.rs_key, ctx.max_message)
            recv_until(tls, time.monotonic() + ctx.io_timeout, parser.feed,
                       lambda: parser.result is not None, parser.feed_eof,
                       what="reading the request")
            req = parser.result
            assert req is not None
            if req.status in (400, 401):
                log.warning("https-simple request refused with HTTP %d: %s", req.status, req.reason)
                out = build_sa_error(req.status, req.chunked)
            elif req.status == 202:
                out = build_sa_response(P.build_generic_error(P.Rc.INVALID_MESSAGE_TYPE))
            else:
                answer = self.el.dispatcher.handle(req.body, "simple")
                out = build_sa_response(answer.pieces)
            tls.settimeout(ctx.io_timeout)
            tls.sendall(out)
            if answer is not None and answer.confirmed:   # done once handed to TLS (W App. A)
                if not self.ls.stopping:
                    self.confirmed = True
                    self.ls.confirmed()
        except (OSError, ssl.SSLError) as e:
            log.warning("https-simple connection failed: %s", e or type(e).__name__)
            if answer is not None:
                if answer.transaction is not None and answer.transaction.method == "configure":
                    # W 4.2: the device cannot know what the server saw of a configure-start
                    self.ctx.trigger = "internal error(socket)"
                    self.ls.stop(Err.EPULL)
                self.el.dispatcher.finish(answer.transaction)
                answer = None
        except BaseException:
            if answer is not None:
                self.el.dispatcher.finish(answer.transaction)
            raise
        finally:
            close_tls(tls, 2)
        if answer is None or answer.confirmed:
            return
        if self.ls.stopping:
            self.el.dispatcher.finish(answer.transaction)
            return
        if answer.end is not None:
            self.ls.stop(answer.end)
        elif answer.followup is not None:
            result_url = self._result_url(req.body)
            tr = answer.transaction
            self.el.finish_transaction(answer, lambda pieces: self._deliver(result_url, tr, pieces))

    def _result_url(self, body: bytes) -> str:
        try:
            url = P.parse_message(body).result_url
        except ProtocolError:
            url = None
        if url:
            self.last_result_url = url
        return url or self.last_result_url or self.ctx.rs_url or _rotated(self.ctx.pull_urls, self.ctx.pull_index)[0]

    def _deliver(self, url_s: str, tr: Transaction, pieces: list) -> Optional[P.DoneAnswer]:
        ctx = self.ctx
        if self.ls.stopping:
            raise _Cancelled()
        try:
            url = P.parse_url(url_s)
            if url.scheme != "https":
                return None
            ans = exchange(url, build_form_b(url, ctx.distribution_id, ctx.rs_key, pieces),
                           ctx.client_ssl(), ctx.io_timeout, **ctx.tls_args())
            if ans.status >= 400:
                return None
            return P.parse_done_response(ans.body, tr.method)
        except NET_ERRORS as e:
            log.warning("%s-done to %s failed: %s", tr.method, url_s, e or type(e).__name__)
            return None

    def shutdown(self) -> None:
        """Connections still open are cut (their threads see the round is over)."""
        with self._lock:
            socks = list(self._conns.values())
        for s in socks:
            try:
                socket.socket.shutdown(s, socket.SHUT_RDWR)
            except (OSError, ValueError):
                pass

    def after_join(self) -> None:
        self._close_listeners()     # normally closed by the round thread already
