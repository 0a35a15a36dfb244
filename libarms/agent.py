"""The public agent: ``Agent`` is libarms' ``arms_context_t`` with its API as methods.

Typical use (the libarms order)::

    agent = Agent("0001-0000-1234-0005-0000-0000-0000-002A", MyCallbacks())
    agent.load_config(open("initial-config").read())     # LS URLs and retry bases
    agent.register_cert(open("arms-root-ca.pem").read())  # trust anchor for the LS
    agent.register_authkey("LS-SA key")
    agent.register_description("My Gateway", "1.0")
    agent.restore_state(saved)             # optional: skip the LS, start at the last good RS
    agent.pull()                           # two-stage provisioning; ArmsError(code) on failure
    saved = agent.dump_state()
    agent.push_method_query(); agent.run() # push phase (libarms/push.py)

The pull follows ``spec/arms-agent.md`` §2.3/§2.4/§2.9: LS rounds (retry bases x500 rounds,
x20 s apart), lines brought up and down around every attempt through ``Callbacks.line_ctrl``
(NEEDPOLL polled once per poll interval, bounded by the line timeout), RS redundancy (<= 5 URLs,
starting at the last good one, from the last good line), RS rounds then fallback to the LS,
result codes 501/502/503/2xx/5xx, all inside the total timeout. Everything learnt lives in
``agent.ctx`` (:class:`~libarms.context.Context`).
"""

from __future__ import annotations

import binascii
import logging
import os
import ssl
import struct
import threading
import time

from . import _lines
from ._atomic import write_atomic
from .callbacks import Callbacks, ConfigAction, Frag, Line, LineAction, LineStatus, LineType
from .context import Context
from .errors import ArmsError, ArmsLibError, ConfigError, Err, ProtocolError
from .protocol import pull as P
from .protocol.distid import DistributionId
from .protocol.http import build_post, parse_url
from .protocol.initial_config import parse_initial_config
from .states import Event, State, next_state
from .transport import https
from .transport.tls import BUILD_TIME, TlsPolicy, check_client_credentials
from .transport import tls as _tls

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing stays unloaded at run time (footprint)
    from typing import Optional, Sequence


def tls_now() -> float:
    return _tls._now()

log = logging.getLogger("libarms.agent")

MIN_TIMEOUT, DEFAULT_TIMEOUT, MAX_TIMEOUT = 60, 21600, 86400
MAX_PEM = 5120
MAX_KEY = 64
MAX_DESC = 32
ANON_ACCOUNT = ("anonymous@test.iij.ad.jp", "anonymous")

# Log codes (spec/arms-agent.md §4.8)
LOG_INFO, LOG_LS_START, LOG_LS_END, LOG_RS_START, LOG_RS_END = 0, 2, 3, 5, 6
LOG_LS_RETRY, LOG_RS_RETRY, LOG_LINE_UP, LOG_LINE_DOWN = 8, 9, 21, 25
LOG_ECONNECT, LOG_EHTTP, LOG_ECERT, LOG_ECALLBACK, LOG_ESSL = 103, 105, 106, 108, 109
LOG_EINITIAL_CONFIG = 114
LOG_ELINE_AUTH, LOG_ELINE_TIMEOUT, LOG_ELINE_NOTAVAIL = 120, 121, 122
LOG_ELS_ACCESS, LOG_ERS_ACCESS = 130, 131
LOG_ERROR, LOG_DEBUG = 100, 200

STATE_MAGIC = b"LIBARMS-PY-STATE\n"
STATE_VERSION = 2                 # 1: JSON + SHA-256 (still read, see _decode_state)

#: The time floor file is rewritten only when the floor has moved this far (s) past what the
#: file holds. Each rewrite costs two fsyncs on the pull's critical path (the LS and the RS
#: contacts both raise the floor); a file that lags by less than this only means that, after a
#: reboot with a clock that is behind, a certificate that expired within that hour before the
#: reboot is not recognised as expired. The floor also travels in dump_state().
FLOOR_SAVE_STEP = 3600.0

_LINE_NAMES = {LineType.PPPOE: "PPPoE", LineType.DHCP: "DHCP", LineType.MOBILE: "Mobile",
               LineType.STATIC: "Static", LineType.RA: "RA", LineType.PPPOE_IPV6: "PPPoE(IPv6)"}
_IPV4_LINES = {LineType.PPPOE, LineType.DHCP, LineType.MOBILE}
_IPV6_LINES = {LineType.PPPOE_IPV6, LineType.RA}


class _CallbackFailure(Exception):
    """A callback raised or returned something outside its contract (-> ARMS_ECALLBACK)."""


class _Timeout(Exception):
    """The total pull timeout passed."""


def _fatal_code(code: int) -> Err:
    """Stop code for a 2xx/5xx server answer (§3.4)."""
    if code == 501:
        return Err.EDONTRETRY
    if code == 502:
        return Err.EPULL
    return Err.EREBOOT


_TRIGGERS = {501: "received 501 Out of service", 502: "received 502 Push failed",
             503: "received 503 Need reboot"}


class Agent:
    """One ARMS agent (one distribution id). Not thread-safe: call it from one thread.

    Keyword arguments other than the two positional ones tune timings for tests and special
    devices; their defaults are libarms 5.33's:

    * ``ls_retry_max_factor`` (500) and ``ls_retry_interval_factor`` (20 s): how the initial
      config's retry bases scale into LS rounds and the wait between them;
    * ``line_poll_interval`` (1 s) between ``line_ctrl(STATUS)`` polls;
    * ``no_line_wait`` (60 s) before giving up a phase that has no line;
    * ``connect_timeout`` / ``response_timeout`` (30 s each) per HTTPS exchange;
    * ``time_floor_path``: file that keeps the latest trusted time across boots (see
      :mod:`libarms.transport.tls`); without it the floor lives in ``dump_state()`` only.
    """

    def __init__(self, distribution_id, callbacks: Optional[Callbacks] = None, *,
                 ls_retry_max_factor: int = 500, ls_retry_interval_factor: float = 20.0,
                 line_poll_interval: float = 1.0, no_line_wait: float = 60.0,
                 connect_timeout: float = 30.0, response_timeout: float = 30.0,
                 time_floor_path: Optional[str] = None):
        self.ctx = Context(DistributionId.parse(distribution_id), callbacks or Callbacks())
        self._state = State.INITIAL
        self.ls_retry_max_factor = int(ls_retry_max_factor)
        self.ls_retry_interval_factor = float(ls_retry_interval_factor)
        self.line_poll_interval = float(line_poll_interval)
        self.no_line_wait = float(no_line_wait)
        self.connect_timeout = float(connect_timeout)
        self.response_timeout = float(response_timeout)
        self.time_floor_path = time_floor_path
        self._deadline = float("inf")
        self._wake = threading.Event()
        self._in_run = False
        self._stop_pending = False
        self._last_error = ""
        self.app_event_interval = 60.0      # set_app_event_interval(); read by the push loop
        self.ctx.time_floor = BUILD_TIME
        self._floor_saved = 0.0             # what the time floor file holds (0: nothing usable)
        self._floor_writer: Optional[threading.Thread] = None   # its write, while it runs
        if time_floor_path and os.path.exists(time_floor_path):
            try:
                with open(time_floor_path) as f:
                    self._floor_saved = float(f.read(64).strip() or 0)
                self.ctx.time_floor = max(BUILD_TIME, self._floor_saved)
            except (OSError, ValueError) as e:
                log.warning("ignoring unreadable time floor file %s: %s", time_floor_path, e)

    # -- registration (libarms arms_load_config / arms_register_*) --------------------------

    @property
    def distribution_id(self) -> str:
        return str(self.ctx.distribution_id)

    @property
    def state(self) -> State:
        return self._state

    def load_config(self, text: "str | bytes") -> None:
        """Install an initial config (plain text, §3.2): LS URLs, LS retry bases, anonymous
        accounts. ConfigError (with the line at fault) when it does not parse."""
        try:
            cfg = parse_initial_config(text)
        except ConfigError as e:
            self._log(LOG_EINITIAL_CONFIG, f"initial config parse error: {e}")
            raise
        c = self.ctx
        c.ls_urls = list(cfg.ls_urls)
        c.ls_retry_interval, c.ls_retry_max = cfg.retry_interval, cfg.retry_max
        c.ls_line_timeout = 30
        c.anon_pppoe, c.anon_pppoe_ipv6, c.anon_mobile = cfg.pppoe, cfg.pppoe_ipv6, cfg.mobile
        c.ls_index = 0

    def register_cert(self, pem: str) -> None:
        """Register the ARMS Root CA (PEM), the only trust anchor for the LS."""
        if not isinstance(pem, str) or len(pem) >= MAX_PEM:
            raise ArmsError(Err.EINVAL, f"root CA must be a PEM text shorter than {MAX_PEM} bytes")
        try:
            # the LS connections' own context (tls caches it): the anchor is parsed once
            _tls.client_context(TlsPolicy("LS", pem, time_floor=self.ctx.time_floor))
        except (ssl.SSLError, ValueError) as e:
            raise ArmsError(Err.EINVAL, f"root CA is not a PEM X.509 certificate: {e}") from None
        self.ctx.root_ca_pem = pem

    def register_authkey(self, key: str) -> None:
        """Register the LS-SA key (HTTP Basic password towards the LS, <= 64 characters)."""
        if not isinstance(key, str) or len(key) > MAX_KEY:
            raise ArmsError(Err.EINVAL, f"LS-SA key must be a string of at most {MAX_KEY} characters")
        self.ctx.ls_sa_key = key

    def register_description(self, description: Optional[str], version: Optional[str] = None) -> None:
        """SA description (sent in every request) and firmware version (``firmware-info``);
        each at most 32 characters; None leaves a field unchanged."""
        for v, what in ((description, "description"), (version, "firmware version")):
            if v is not None and (not isinstance(v, str) or len(v) > MAX_DESC):
                raise ArmsError(Err.EINVAL, f"{what} must be a string of at most {MAX_DESC} characters")
        if description is not None:
            self.ctx.description = description
        if version is not None:
            self.ctx.firmware_version = version

    def set_https_proxy(self, url: Optional[str]) -> None:
        """Send every later connection through an HTTP CONNECT proxy (``http://host:port/``);
        None disables it. With a proxy, https-simple is not offered in the push phase."""
        if url is None:
            self.ctx.https_proxy = None
            return
        try:
            if len(url) >= 128:
                raise ValueError("proxy URL must be shorter than 128 characters")
            parse_url(url)
        except (ValueError, TypeError) as e:
            raise ArmsError(Err.EINVAL, f"bad proxy URL: {e}") from None
        self.ctx.https_proxy = url

    def set_pull_trigger(self, trigger: int) -> None:
        """1: the next pull reports "invalid config"; 2: "module sync failed"."""
        names = {1: "invalid config", 2: "module sync failed"}
        if trigger not in names:
            raise ArmsError(Err.EINVAL, "pull trigger must be 1 (config error) or 2 (sync failed)")
        self.ctx.trigger = names[trigger]

    # -- what the servers told us (libarms arms_get_*) ---------------------------------------

    def get_hbtinfo(self) -> list:
        """Heartbeat servers from the RS answer (``HeartbeatInfo``: host, port, passphrase, interval)."""
        return list(self.ctx.heartbeat)

    def get_rsinfo(self) -> list[str]:
        """Push source addresses given by the RS (``rs-push-server-address``)."""
        return list(self.ctx.push_addresses)

    def get_rs_url(self) -> list[str]:
        """Pull-side proxy URLs (``rs-pull-server-url``) for method query and confirmation."""
        return list(self.ctx.rs_pull_urls)

    def get_rs_tunnel_url(self) -> list[str]:
        """Tunnel URLs learnt by the push-method query."""
        return list(self.ctx.tunnel_urls)

    def get_ls_url(self) -> list[str]:
        """The LS URLs in use (initial config or the built-in ones)."""
        return list(self.ctx.ls_urls)

    def get_proposed_push_port(self) -> int:
        """``push-port`` proposed by the RS (0 = none)."""
        return self.ctx.proposed_push_port

    def get_proposed_push_timeout(self) -> int:
        """``push-timeout`` proposed by the RS in seconds (0 = none)."""
        return self.ctx.proposed_push_timeout

    # -- state, log ---------------------------------------------------------------------------

    def _set_state(self, new: State) -> None:
        """Enter ``new``; ``Callbacks.state`` is called only when the value changes."""
        old = self._state
        if new == old:
            return
        self._state = new
        log.info("state %s(%d) -> %s(%d) dist=%s", old.name, old, new.name, new,
                 self.ctx.distribution_id)
        try:
            self.ctx.callbacks.state(old, new)
        except Exception:
            log.exception("state callback raised (ignored)")

    def _fire(self, event: Event) -> None:
        self._set_state(next_state(self._state, event))

    def _log(self, code: int, msg: str) -> None:
        """A libarms log event: ``Callbacks.log(code, msg)`` and the ``libarms.agent`` logger."""
        level = logging.DEBUG if code >= 200 else logging.WARNING if code >= 100 else logging.INFO
        log.log(level, "[%d] %s state=%s dist=%s", code, msg, self._state.name, self.ctx.distribution_id)
        try:
            self.ctx.callbacks.log(code, msg)
        except Exception:
            log.exception("log callback raised (ignored)")

    # -- time -----------------------------------------------------------------------------

    def _left(self) -> float:
        return self._deadline - time.monotonic()

    def _check_deadline(self) -> None:
        if self._left() <= 0:
            raise _Timeout()

    def _sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (bounded by the total timeout: raises _Timeout when it passes)."""
        left = self._left()
        if seconds >= left:
            self._wake.wait(max(0.0, left))
            raise _Timeout()
        if seconds > 0 and self._wake.wait(seconds):
            self._last_error = "pull interrupted by end()"
            raise _Timeout()

    def _note_verified(self) -> None:
        """A verified server contact: raise the time floor to the clock when the clock is sane.
        The file (at most one write an hour) is written on a short-lived thread: its two
        fsyncs (tens of ms on flash) overlap the next exchange; ``pull()`` waits for it before
        it returns. A crash before it is durable leaves the previous floor (the write is
        atomic), which is only older: dates are then checked against that one."""
        now = tls_now()
        if now > self.ctx.time_floor:
            self.ctx.time_floor = now
            if self.time_floor_path and now >= self._floor_saved + FLOOR_SAVE_STEP \
                    and self._floor_writer is None:
                self._floor_saved = float(int(now))       # no second write while this runs
                self._floor_writer = threading.Thread(
                    target=self._write_floor, args=(self.time_floor_path, int(now)),
                    name="libarms-time-floor", daemon=True)
                self._floor_writer.start()

    def _write_floor(self, path: str, value: int) -> None:
        try:
            write_atomic(path, f"{value}\n".encode())
        except OSError as e:
            self._floor_saved = 0.0                       # the next contact tries again
            log.warning("cannot save the time floor to %s: %s", path, e)

    def _wait_floor_written(self) -> None:
        """Wait (bounded) for the time floor file write started by this pull."""
        th, self._floor_writer = self._floor_writer, None
        if th is not None:
            th.join(30)

    # -- TLS policies (also used by the push side) -----------------------------------------

    def _ls_policy(self) -> TlsPolicy:
        c = self.ctx
        return TlsPolicy("LS", c.root_ca_pem, c.sa_cert_pem, c.sa_key_pem, c.time_floor)

    def _rs_policy(self) -> TlsPolicy:
        """Policy for every RS-side connection: the RS CA, the SA certificate once held."""
        c = self.ctx
        if not c.rs_ca_pem:
            raise ssl.SSLError("no rs-certificate from the LS: RS connections cannot be verified")
        return TlsPolicy("RS", c.rs_ca_pem, c.sa_cert_pem, c.sa_key_pem, c.time_floor)

    def _post(self, url: str, user_key: str, body: bytes, policy: TlsPolicy, *, max_body: int):
        """Form-A exchange with one server; returns the HttpResponse (raises on failure)."""
        u = parse_url(url)
        req = build_post(u.path, str(self.ctx.distribution_id), user_key, body)
        resp = https.post(u, req, policy, proxy=self.ctx.https_proxy,
                          connect_timeout=min(self.connect_timeout, max(self._left(), 0.001)),
                          response_timeout=min(self.response_timeout, max(self._left(), 0.001)),
                          max_body=max_body, note=lambda m: self._log(LOG_DEBUG, m))
        self._note_verified()
        return resp

    # -- line control -----------------------------------------------------------------------

    def _line_call(self, action: LineAction, line: Line) -> LineStatus:
        try:
            r = self.ctx.callbacks.line_ctrl(action, line)
        except Exception as e:
            raise _CallbackFailure(f"line_ctrl({action.name}) raised {e!r}") from e
        try:
            return LineStatus(r)
        except (ValueError, TypeError):
            raise _CallbackFailure(f"line_ctrl({action.name}) returned {r!r}, not a LineStatus") from None

    def _line_connect(self, idx: int, line: Line, lltimeout: int) -> bool:
        name = _LINE_NAMES.get(line.type, line.type.name)
        self._log(LOG_DEBUG, f"line: connecting({idx}): {name}")
        st = self._line_call(LineAction.CONNECT, line)
        polls = 0
        while st in (LineStatus.NEEDPOLL, LineStatus.DISCONNECTED):
            if polls >= lltimeout:
                self._log(LOG_ELINE_TIMEOUT, f"Line {name}({idx}) Timeout.")
                return False
            polls += 1
            self._sleep(self.line_poll_interval)
            st = self._line_call(LineAction.STATUS, line)
            if st == LineStatus.NOTAVAILABLE:
                raise _CallbackFailure("line_ctrl(STATUS) returned NOTAVAILABLE while polling")
        if st == LineStatus.CONNECTED:
            self._log(LOG_LINE_UP, f"Line {name}({idx}) Connected.")
            return True
        code = {LineStatus.AUTHFAIL: LOG_ELINE_AUTH, LineStatus.TIMEOUT: LOG_ELINE_TIMEOUT,
                LineStatus.NOTAVAILABLE: LOG_ELINE_NOTAVAIL}[st]
        self._log(code, f"Line {name}({idx}) {st.name.capitalize()}.")
        return False

    def _line_disconnect(self, idx: int, line: Line) -> None:
        name = _LINE_NAMES.get(line.type, line.type.name)
        self._log(LOG_DEBUG, f"line: disconnecting({idx}): {name}")
        st = self._line_call(LineAction.DISCONNECT, line)
        for _ in range(1_000_000):           # bounded; the total timeout ends it first
            if st == LineStatus.DISCONNECTED:
                self._log(LOG_LINE_DOWN, f"Line {name}({idx}) Disconnected.")
                return
            if st not in (LineStatus.NEEDPOLL, LineStatus.CONNECTED):
                raise _CallbackFailure(f"line_ctrl(DISCONNECT) returned {st.name}")
            self._sleep(self.line_poll_interval)
            st = self._line_call(LineAction.STATUS, line)
        raise _Timeout()

    @staticmethod
    def _family_ok(line: Line, url: str) -> bool:
        try:
            fam = parse_url(url).family
        except ValueError:
            return True     # refused later with a clear log line
        if line.type in _IPV4_LINES:
            return fam == 4
        if line.type in _IPV6_LINES:
            return fam == 6
        return True

    def _expand_lines(self, lines: Optional[Sequence[Line]]) -> list[Line]:
        out = []
        c = self.ctx
        for ln in list(lines or [])[:5]:
            if ln.type == LineType.NONE:
                break
            if ln.type == LineType.ANONPPPOE:
                acct = c.anon_pppoe or ANON_ACCOUNT
                ln = Line(LineType.PPPOE, ln.ifindex, pppoe_id=acct[0], pppoe_pass=acct[1])
            elif ln.type == LineType.ANONPPPOE_IPV6:
                acct = c.anon_pppoe_ipv6 or ANON_ACCOUNT
                ln = Line(LineType.PPPOE_IPV6, ln.ifindex, pppoe_id=acct[0], pppoe_pass=acct[1])
            elif ln.type == LineType.ANONMOBILE:
                m = c.anon_mobile
                ln = (Line(LineType.MOBILE, ln.ifindex, pppoe_id=m.account, pppoe_pass=m.password,
                           telno=m.telno, cid=m.cid, apn=m.apn, pdp=m.pdp) if m else
                      Line(LineType.MOBILE, ln.ifindex, pppoe_id=ANON_ACCOUNT[0], pppoe_pass=ANON_ACCOUNT[1]))
            out.append(ln)
        return out

    # -- pull ---------------------------------------------------------------------------------

    def pull(self, timeout: int = DEFAULT_TIMEOUT, fragment: int = 0,
             lines: Optional[Sequence[Line]] = None) -> None:
        """Two-stage provisioning (``arms_pull``). Returns when the RS config is applied;
        raises ArmsError with ETIMEOUT, EMAXRETRY, EDONTRETRY (server said stop), EREBOOT,
        EPULL, ECALLBACK or EINVAL. ``lines`` are the LS-phase lines (default: one DHCP line
        on ifindex 0, i.e. a host whose uplink is already up); ``fragment`` caps the bytes
        per ``Callbacks.config`` call (0 = whole config at once)."""
        if timeout == 0:
            timeout = DEFAULT_TIMEOUT
        if not MIN_TIMEOUT <= timeout <= MAX_TIMEOUT:
            raise ArmsError(Err.EINVAL, f"pull timeout must be {MIN_TIMEOUT}..{MAX_TIMEOUT} s")
        if fragment < 0:
            raise ArmsError(Err.EINVAL, "fragment must be >= 0")
        c = self.ctx
        if not c.root_ca_pem:
            raise ArmsError(Err.EINVAL, "register_cert() the ARMS root CA before pull()")
        self._deadline = time.monotonic() + timeout
        self._wake.clear()
        self._stop_pending = False
        c.fragment = fragment
        c.lines = self._expand_lines(lines if lines is not None else [Line(LineType.DHCP, 0)])
        c.heartbeat, c.push_addresses, c.rs_pull_urls, c.tunnel_urls = [], [], [], []
        try:
            try:
                r = self._pull_loop()
            finally:
                self._wait_floor_written()
        except _Timeout:
            r = Err.ETIMEOUT
            self._last_error = ("pull interrupted by end()/stop()" if self._wake.is_set()
                                else f"total pull timeout of {timeout:g} s expired")
        except _CallbackFailure as e:
            r = Err.ECALLBACK
            self._last_error = str(e)
            self._log(LOG_ECALLBACK, str(e))
        except BaseException:
            self._fire(Event.FAIL)
            raise
        c.last_result = int(r)
        if r == 0:
            self._fire(Event.RS_DONE)
            return
        self._fire(Event.FAIL)
        raise ArmsError(r, self._last_error)

    def _pull_loop(self) -> int:
        c = self.ctx
        first = True
        for _ in range(1_000_000):           # bounded; the total timeout ends it first
            if not c.rs_endpoint:
                c.last_line = 0
                self._fire(Event.LS_START if first else Event.RS_FALLBACK)
                self._log(LOG_LS_START, "Pull from LS.")
                r = self._ls_phase()
                if r:
                    return r
                self._fire(Event.LS_DONE)
            else:
                self._log(LOG_INFO, "Skip LS access.  Pull from RS.")
                self._fire(Event.RS_START)
            first = False
            r = self._rs_phase()
            if r in (0, Err.ETIMEOUT, Err.EDONTRETRY, Err.ECALLBACK, Err.EREBOOT):
                return r
            self._log(LOG_ERS_ACCESS, f"RS phase failed ({Err(r).name}); back to the LS")
            c.forget_rs()
        raise _Timeout()

    def _ls_phase(self) -> int:
        c = self.ctx
        if not c.lines:
            c.trigger = "LS not found"
            self._last_error = "no LS-phase line"
            self._sleep(self.no_line_wait)
            return Err.EPULL
        retries = c.ls_retry_max * self.ls_retry_max_factor
        wait = c.ls_retry_interval * self.ls_retry_interval_factor
        self._log(LOG_DEBUG, f"calculated. ls max retry {retries} times.")
        self._log(LOG_DEBUG, f"calculated. ls retry interval {wait:g} sec.")
        for rnd in range(retries + 1):
            if rnd:
                self._check_deadline()
                self._log(LOG_LS_RETRY, f"LS retry({rnd}/{retries}), wait {wait:g} sec.")
                self._sleep(wait)
            for idx, line in enumerate(c.lines):
                up = self._line_connect(idx, line, c.ls_line_timeout)
                try:
                    r = self._ls_transaction(line) if up else None
                finally:
                    self._line_disconnect(idx, line)
                if r is not None and r in (0, Err.EDONTRETRY, Err.EPULL, Err.EREBOOT):
                    return r
                self._check_deadline()
        c.trigger = "LS not found"
        self._log(LOG_ELS_ACCESS, f"LS access failed after {retries + 1} rounds: {self._last_error}")
        return Err.EMAXRETRY

    def _ls_transaction(self, line: Line) -> Optional[int]:
        """Try every LS URL once from the current index. 0 on success, a stop code, or None."""
        c = self.ctx
        body = P.build_rs_solicitation_request(str(c.distribution_id), description=c.description,
                                               trigger=c.trigger)
        n = len(c.ls_urls)
        start = c.ls_index
        for i in range(n):
            self._check_deadline()
            idx = (start + i) % n
            url = c.ls_urls[idx]
            if not self._family_ok(line, url):
                continue
            self._log(LOG_DEBUG, f"[-] Start rs-solicitation LS[{idx}]: {url}")
            try:
                resp = self._post(url, c.ls_sa_key, body, self._ls_policy(), max_body=P.MAX_LS_RESPONSE)
                ans = P.parse_rs_solicitation_response(resp.body)
            except P.FatalAnswer as e:
                self._last_error = f"LS {url}: {e}"
                self._log(LOG_ERROR, self._last_error)
                return Err.EREBOOT
            except (OSError, ssl.SSLError, ProtocolError, ValueError) as e:
                self._attempt_failed("LS", url, e)
                c.ls_index = (idx + 1) % n
                continue
            code = ans.result_code
            if code is None:
                self._last_error = f"LS {url}: answer without a valid result-code"
                self._log(LOG_ERROR, self._last_error)
                return Err.EREBOOT
            if 100 <= code <= 199:
                self._store_location(ans)
                c.ls_index = idx
                self._log(LOG_LS_END, "LS Access Done")
                return 0
            self._last_error = f"LS {url}: result {code} {ans.description or ''}".rstrip()
            self._log(LOG_ERROR, self._last_error)
            if 300 <= code <= 499:
                c.ls_index = (idx + 1) % n
                continue
            c.trigger = _TRIGGERS.get(code, "got result of failure from server")
            return _fatal_code(code)
        return None

    def _attempt_failed(self, role: str, url: str, e: BaseException) -> None:
        if isinstance(e, ssl.SSLError):
            code = LOG_ECERT if "certificate" in str(e).lower() or isinstance(e, ssl.SSLCertVerificationError) else LOG_ESSL
        elif isinstance(e, https.HttpStatusError):
            code = LOG_EHTTP
        elif isinstance(e, ProtocolError):
            code = LOG_ERROR
        else:
            code = LOG_ECONNECT
        kind = type(e).__name__
        hint = ""
        if isinstance(e, https.HttpStatusError) and e.status == 401:
            hint = (" (check the distribution id and the LS-SA key registered with register_authkey)"
                    if role == "LS" else " (the RS refused the RS key the LS handed out)")
        elif isinstance(e, ssl.SSLCertVerificationError):
            hint = (" (is the root CA given to register_cert the one that signed this LS?)"
                    if role == "LS" else " (the RS is not signed by the rs-certificate the LS sent)")
        self._last_error = f"{role} {url}: {kind}: {e}{hint}"
        self._log(code, self._last_error)

    def _store_location(self, ans: "P.RsSolicitationResponse") -> None:
        c = self.ctx
        c.clear_location()
        c.rs_key = ans.rs_preshared_key
        c.rs_urls = list(ans.rs_urls)
        c.rs_certs = [i.location.rs_certificate for i in ans.rs_info]
        c.rs_retry_max = max(0, ans.rs_retry_max)
        c.rs_retry_interval = max(0, ans.rs_retry_interval)
        c.ll_timeout = max(0, ans.ll_timeout)
        c.rs_lines = list(ans.lines)
        c.rs_endpoint = ""

    def _rs_phase(self) -> int:
        c = self.ctx
        if not c.rs_lines or not c.rs_urls:
            c.trigger = "RS not found"
            self._last_error = "the LS answer defines no line or no RS for stage 2"
            self._log(LOG_ERS_ACCESS, self._last_error)
            self._sleep(self.no_line_wait)
            return Err.EPULL
        retries, wait = c.rs_retry_max, c.rs_retry_interval
        self._log(LOG_DEBUG, f"calculated. rs max retry {retries} times.")
        self._log(LOG_DEBUG, f"calculated. rs retry interval {wait} sec.")
        nlines = len(c.rs_lines)
        for rnd in range(retries + 1):
            if rnd:
                self._check_deadline()
                self._log(LOG_RS_RETRY, f"RS retry({rnd}/{retries}), wait {wait} sec.")
                self._sleep(wait)
            for k in range(nlines):
                li = (c.last_line + k) % nlines
                line = c.rs_lines[li]
                up = self._line_connect(li, line, c.ll_timeout)
                try:
                    r = self._rs_transaction(line) if up else None
                finally:
                    self._line_disconnect(li, line)
                if r == 0:
                    c.last_line = li
                    return 0
                if r is not None and r in (Err.EDONTRETRY, Err.EPULL, Err.EREBOOT):
                    return r
                self._check_deadline()
        c.trigger = "retry is over"
        return Err.EMAXRETRY

    def _rs_transaction(self, line: Line) -> Optional[int]:
        c = self.ctx
        body = P.build_config_solicitation_request(
            str(c.distribution_id), description=c.description, trigger=c.trigger,
            firmware_info=c.firmware_version)
        n = len(c.rs_urls)
        start = c.current_rs
        for i in range(n):
            self._check_deadline()
            idx = (start + i) % n
            url = c.rs_urls[idx]
            if not self._family_ok(line, url):
                continue
            self._log(LOG_DEBUG, f"RS[{idx}]: {url}")
            try:
                resp = self._post(url, c.rs_key, body, self._rs_policy(), max_body=P.MAX_RS_RESPONSE)
                ans = P.parse_config_solicitation_response(resp.body)
            except P.FatalAnswer as e:
                self._last_error = f"RS {url}: {e}"
                self._log(LOG_ERROR, self._last_error)
                return Err.EREBOOT
            except (OSError, ssl.SSLError, ProtocolError, ValueError) as e:
                self._attempt_failed("RS", url, e)
                c.current_rs = (idx + 1) % n
                continue
            code = ans.result_code
            if code is not None and 100 <= code <= 199:
                problem = self._apply_service(ans, idx, url)
                if problem is None:
                    self._log(LOG_RS_END, "RS Access Done")
                    self._log(LOG_DEBUG, f"RS End point: {url}")
                    return 0
                self._last_error = f"RS {url}: {problem}"
                self._log(LOG_ERROR, self._last_error)
                c.current_rs = (idx + 1) % n
                continue
            self._last_error = f"RS {url}: result {code} {ans.description or ''}".rstrip()
            self._log(LOG_ERROR, self._last_error)
            if code is None or 300 <= code <= 499:
                c.current_rs = (idx + 1) % n
                continue
            c.trigger = _TRIGGERS.get(code, "got result of failure from server")
            return _fatal_code(code)
        return None

    def _apply_service(self, ans: "P.ConfigSolicitationResponse", idx: int, url: str) -> Optional[str]:
        """Hand the RS answer to the application and store it. Returns a problem text when
        the answer must be refused (next URL), None when it is applied."""
        c = self.ctx
        if bool(ans.sa_certificate) != bool(ans.sa_private_key):
            return "the answer carries an SA certificate without its key, or a key without a certificate"
        if ans.sa_certificate:
            try:
                check_client_credentials(ans.sa_certificate, ans.sa_private_key, c.rs_ca_pem)
            except (ssl.SSLError, OSError, ValueError) as e:
                return f"SA certificate and key do not load as a pair: {e}"
        cb = c.callbacks
        new_ids = {m.id for m in ans.modules}
        try:
            for old in c.modules:
                if old.id not in new_ids:
                    cb.config(old.id, "", "", ConfigAction.REMOVE_MODULE, b"", Frag.FIRST | Frag.FINISHED)
            mods = {m.id: m for m in ans.modules}
            for cfg in ans.configs:
                self._deliver(cb, mods[cfg.id], cfg.data)
        except Exception as e:
            c.trigger = "invalid config"
            return f"config callback refused the configuration: {e!r}"
        c.modules = list(ans.modules)
        c.sa_cert_pem, c.sa_key_pem = ans.sa_certificate, ans.sa_private_key
        c.proposed_push_port, c.proposed_push_timeout = ans.push_port, ans.push_timeout
        c.heartbeat = list(ans.heartbeat)
        c.push_addresses = list(ans.rs_push_server_addresses)
        c.rs_pull_urls = list(ans.rs_pull_server_urls)
        c.rs_pull_1st = idx if len(c.rs_pull_urls) == len(c.rs_urls) else -1
        c.current_rs = idx
        c.rs_endpoint = url
        c.trigger = P.TRIGGER_POWER_ON
        return None

    def _deliver(self, cb: Callbacks, mod, data: bytes) -> None:
        size = self.ctx.fragment
        if size <= 0 or len(data) <= size:
            cb.config(mod.id, mod.version, mod.info, ConfigAction.PULL_STORE_CONFIG, data,
                      Frag.FIRST | Frag.FINISHED)
            return
        n = (len(data) + size - 1) // size
        for i in range(n):
            flags = (Frag.FIRST if i == 0 else Frag.CONTINUE) | (Frag.FINISHED if i == n - 1 else Frag.CONTINUE)
            cb.config(mod.id, mod.version, mod.info, ConfigAction.PULL_STORE_CONFIG,
                      data[i * size:(i + 1) * size], Frag(flags))

    # -- state blob (LS skip) -------------------------------------------------------------------

    def dump_state(self) -> bytes:
        """What a rebooted device needs to skip the LS: RS list, CAs, key, lines, last good RS
        and line, retry parameters, the time floor. Own versioned, checksummed format
        (:data:`STATE_MAGIC`, version 2: records of :mod:`libarms._lines`, then a CRC-32)."""
        c = self.ctx
        recs = [("distribution_id", str(c.distribution_id)), ("rs_endpoint", c.rs_endpoint),
                ("rs_key", c.rs_key)]
        recs += [(k, str(int(v))) for k, v in (
            ("rs_retry_max", c.rs_retry_max), ("rs_retry_interval", c.rs_retry_interval),
            ("ll_timeout", c.ll_timeout), ("last_line", c.last_line),
            ("current_rs", c.current_rs), ("result", c.last_result))]
        recs.append(("time_floor", repr(float(c.time_floor))))
        for i, url in enumerate(c.rs_urls):
            cert = c.rs_certs[i] if i < len(c.rs_certs) else None
            recs.append(("rs", url, "" if cert is None else "1", cert or ""))
        for l in c.rs_lines:
            d = _line_to_dict(l)
            recs.append(("line",) + tuple(str(d[k]) for k in _LINE_FIELDS))
        data = _lines.dump(recs)
        head = STATE_MAGIC + struct.pack(">HI", STATE_VERSION, len(data))
        return head + data + struct.pack(">I", binascii.crc32(head + data))

    def restore_state(self, blob: bytes) -> None:
        """Install a blob from :meth:`dump_state` (or one written by the C libarms 5.33
        ``arms_dump_state``, to migrate a gateway). ArmsError(EINVAL) when it is damaged, of
        another version or of another device; the context is then unchanged."""
        from .protocol import cstate
        if cstate.is_libarms_state(blob):
            return self._restore_c_state(blob)
        try:
            p = _decode_state(bytes(blob))
            if p["distribution_id"] != str(self.ctx.distribution_id):
                raise ValueError(f"state belongs to {p['distribution_id']}")
            lines = [_line_from_dict(d) for d in p["rs_lines"]]
            urls = [str(u) for u in p["rs_urls"]]
            certs = [None if x is None else str(x) for x in p["rs_certs"]]
            ints = {k: int(p[k]) for k in ("rs_retry_max", "rs_retry_interval", "ll_timeout",
                                           "last_line", "current_rs", "result")}
            floor = float(p["time_floor"])
            endpoint, key = str(p["rs_endpoint"]), str(p["rs_key"])
            if len(urls) > 5 or len(lines) > 5 or len(certs) != len(urls):
                raise ValueError("lists out of range")
        except (ValueError, KeyError, TypeError) as e:
            raise ArmsError(Err.EINVAL, f"state blob refused: {e}") from None
        c = self.ctx
        c.rs_endpoint, c.rs_key, c.rs_urls, c.rs_certs, c.rs_lines = endpoint, key, urls, certs, lines
        c.rs_retry_max, c.rs_retry_interval, c.ll_timeout = (ints["rs_retry_max"],
                                                            ints["rs_retry_interval"], ints["ll_timeout"])
        c.last_line = ints["last_line"] % len(lines) if lines else 0
        c.current_rs = ints["current_rs"] % len(urls) if urls else 0
        c.last_result = ints["result"]
        c.time_floor = max(c.time_floor, floor)

    def _restore_c_state(self, blob: bytes) -> None:
        from .protocol import cstate
        try:
            st = cstate.parse_libarms_state(blob)
        except ProtocolError as e:
            raise ArmsError(Err.EINVAL, f"state blob refused: {e}") from None
        c = self.ctx
        c.rs_endpoint, c.rs_key = st.rs_endpoint, st.rs_key
        c.rs_urls, c.rs_certs, c.rs_lines = list(st.rs_urls), list(st.rs_certs), list(st.lines)
        c.rs_retry_max, c.rs_retry_interval, c.ll_timeout = st.rs_retry_max, st.rs_retry_interval, st.ll_timeout
        c.last_line = st.last_line % len(st.lines) if st.lines else 0
        c.current_rs = st.current_rs % len(st.rs_urls) if st.rs_urls else 0
        c.last_result = st.result
        self._log(LOG_INFO, f"restored a libarms 5.33 state blob ({len(blob)} bytes): RS {c.rs_endpoint or '-'}")

    # -- push phase (libarms/push.py) ------------------------------------------------------------

    def push_context(self):
        """The push phase's view of this agent (``libarms.push.PushContext``), refreshed from
        ``ctx``: the pull -> push hand-over."""
        from .push import context_of
        return context_of(self)

    def push_method_query(self):
        from .push import push_method_query
        return push_method_query(self)

    def set_app_event_interval(self, seconds: float) -> None:
        """``arms_set_app_event_interval``: call ``Callbacks.app_event`` every ``seconds``
        (0.1..600, default 60) in ``run()``; ArmsError(EINVAL) outside. Thread-safe; a
        running loop uses the new value from its next wake-up."""
        from .push import set_app_event_interval
        set_app_event_interval(self, seconds)

    def get_app_event_interval(self) -> float:
        """``arms_get_app_event_interval``: the interval in seconds."""
        from .push import get_app_event_interval
        return get_app_event_interval(self)

    def run(self, port=0, fragment=0):
        from .push import event_loop
        self._in_run = True                 # set before reading _stop_pending (see stop())
        try:
            if self._stop_pending:
                return Err.EPULL            # stop() came first: no loop at all
            return event_loop(self, port, fragment)
        finally:
            self._in_run = False
            self._stop_pending = False

    def stop(self) -> bool:
        """Thread-safe: end a running ``run()`` with EPULL, or make a running ``pull()`` end at
        its next wait (ETIMEOUT), or, when neither runs yet, make the next ``run()`` return EPULL
        at once. True when a push loop was asked to stop."""
        self._stop_pending = True           # set before reading _in_run (see run())
        self._wake.set()
        try:
            from .push import stop_event_loop
        except ImportError:
            return False
        deadline = time.monotonic() + 10.0
        for _ in range(10_000):             # bounded: count and time
            if stop_event_loop(self):
                return True
            if not self._in_run or time.monotonic() >= deadline:
                return False
            # run() has begun but its loop has not registered itself yet: it does so at once
            threading.Event().wait(0.005)
        return False

    def end(self) -> None:
        """``arms_end``: tell the application every known module is removed, forget them.
        The state value is kept (as libarms). Called from another thread while ``pull()``
        waits (retry interval, line polling), it makes that pull end with ETIMEOUT (so does
        :meth:`stop`, which also ends a running push loop)."""
        c = self.ctx
        for m in c.modules:
            try:
                c.callbacks.config(m.id, "", "", ConfigAction.REMOVE_MODULE, b"", Frag.FIRST | Frag.FINISHED)
            except Exception as e:
                self._log(LOG_ECALLBACK, f"config(REMOVE_MODULE {m.id}) raised {e!r}")
        c.modules = []
        self._wake.set()


def _line_to_dict(l: Line) -> dict:
    return {"type": int(l.type), "ifindex": l.ifindex, "pppoe_id": l.pppoe_id,
            "pppoe_pass": l.pppoe_pass, "telno": l.telno, "cid": l.cid, "apn": l.apn,
            "pdp": l.pdp, "ipaddr": l.ipaddr}


_LINE_FIELDS = ("type", "ifindex", "pppoe_id", "pppoe_pass", "telno", "cid", "apn", "pdp", "ipaddr")


def _line_from_dict(d: dict) -> Line:
    return Line(LineType(int(d["type"])), int(d["ifindex"]), str(d["pppoe_id"]),
                str(d["pppoe_pass"]), str(d["telno"]), int(d["cid"]), str(d["apn"]),
                str(d["pdp"]), str(d["ipaddr"]))


def _decode_state(blob: bytes) -> dict:
    """A state blob -> the payload as a dict (ValueError when damaged or of another version).

    Version 2 (written now) protects its records with a CRC-32; version 1 (JSON and SHA-256,
    written by earlier releases) is still read, importing json and hashlib only then. A CRC is
    enough: the check is there to catch a damaged file (the file itself is replaced atomically),
    and a digest without a key would not stop anyone who can write the file anyway."""
    n = len(STATE_MAGIC)
    if blob[:n] != STATE_MAGIC or len(blob) < n + 6 + 4:
        raise ValueError("not a libarms state blob")
    version, length = struct.unpack(">HI", blob[n:n + 6])
    if version == 1:
        return _decode_state_v1(blob, length)
    if version != STATE_VERSION:
        raise ValueError(f"state version {version}, this agent reads {STATE_VERSION} and 1")
    end = n + 6 + length
    if len(blob) != end + 4:
        raise ValueError("state blob has the wrong length")
    if struct.pack(">I", binascii.crc32(blob[:end])) != blob[end:]:
        raise ValueError("state blob checksum mismatch")
    p = {"rs_urls": [], "rs_certs": [], "rs_lines": []}
    for rec in _lines.load(blob[n + 6:end]):
        key, fields = rec[0], rec[1:]
        if key == "rs" and len(fields) == 3:
            p["rs_urls"].append(fields[0])
            p["rs_certs"].append(fields[2] if fields[1] else None)
        elif key == "line" and len(fields) == len(_LINE_FIELDS):
            p["rs_lines"].append(dict(zip(_LINE_FIELDS, fields)))
        elif key in ("rs", "line") or len(fields) != 1 or key in p:
            raise ValueError(f"state record {key!r} malformed or repeated")
        else:
            p[key] = fields[0]
    return p


def _decode_state_v1(blob: bytes, length: int) -> dict:
    import hashlib
    import json
    end = len(STATE_MAGIC) + 6 + length
    if len(blob) != end + 32:
        raise ValueError("state blob has the wrong length")
    if hashlib.sha256(blob[:end]).digest() != blob[end:]:
        raise ValueError("state blob checksum mismatch")
    p = json.loads(blob[end - length:end].decode("ascii"))
    if not isinstance(p, dict):
        raise ValueError("state payload is not an object")
    return p


__all__ = ["Agent", "ArmsError", "ArmsLibError"]
