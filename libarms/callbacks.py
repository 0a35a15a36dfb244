"""The application contract: what the agent asks of the device it runs on.

One class, :class:`Callbacks`, with one method per libarms callback (``spec/arms-agent.md``
§4.3-4.7). Subclass it and override what your device supports; every default is safe: it either
does nothing or makes the agent answer the server "505 Not Support", as libarms does for a NULL
callback.

During ``Agent.pull()`` callbacks run on the calling thread. During ``Agent.run()`` (push
wait) they run one at a time on the agent's callback thread, so tunnels, echo and the
https-simple listener keep going while a callback works; never two callbacks at once. Raising
any exception from a callback is a failure of that callback: the agent logs it and maps it to
the protocol's error result (never a crash). A push callback has ``callback_timeout`` seconds
(default 60): past that the server gets the error result (402 / 502), the agent goes on with a
fresh callback thread, and whatever the late callback returns is dropped.

Data-returning callbacks return ``str`` (US-ASCII text, sent as is) or ``bytes`` (binary, sent
base64 with ``encoding="base64"``); the agent splits long results itself, so unlike libarms the
application never sees 1024-byte buffers or ``next`` flags on the way out.
"""

from __future__ import annotations

import enum

from ._record import Record, field
from .states import State

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing stays unloaded at run time (footprint)
    from typing import Optional, Sequence

Result = str | bytes


class LineType(enum.IntEnum):
    """``enum arms_line_types`` (§4.5). The callback never sees the anonymous types' expansion."""

    NONE = 0
    ANONPPPOE = 1
    PPPOE = 2
    DHCP = 3
    ANONMOBILE = 4
    MOBILE = 5
    STATIC = 6
    RA = 7
    PPPOE_IPV6 = 8
    ANONPPPOE_IPV6 = 9


class LineAction(enum.IntEnum):
    CONNECT = 1
    DISCONNECT = 2
    STATUS = 3


class LineStatus(enum.IntEnum):
    """What ``Callbacks.line_ctrl`` returns (``ARMS_LINE_*``)."""

    NEEDPOLL = 0
    CONNECTED = 1
    DISCONNECTED = 2
    TIMEOUT = 3
    AUTHFAIL = 4
    NOTAVAILABLE = 5


class Line(Record):
    """One line (uplink) the agent may ask the device to bring up.

    Only the fields of ``type`` are meaningful: ``pppoe_id``/``pppoe_pass`` for PPPoE,
    ``telno``/``cid``/``apn``/``pdp``/``pppoe_id``/``pppoe_pass``/``ipaddr`` for mobile,
    ``ipaddr`` for static. ``repr()`` hides the password: a line may be logged, a secret never.
    """

    type: LineType
    ifindex: int = 0
    pppoe_id: str = ""
    pppoe_pass: str = field(default="", repr=False)
    telno: str = ""
    cid: int = 0
    apn: str = ""
    pdp: str = ""
    ipaddr: str = ""


class ConfigAction(enum.IntEnum):
    """``action`` of ``Callbacks.config`` (§4.4)."""

    PULL_STORE_CONFIG = 1
    PUSH_STORE_CONFIG = 2
    PUSH_EXEC_STORED_CONFIG = 3
    PUSH_REVERT_CONFIG = 4
    REMOVE_MODULE = 5


class Frag(enum.IntFlag):
    """Fragment flags passed with config data (``ARMS_FRAG_*``)."""

    CONTINUE = 0x00
    FIRST = 0x01
    FINISHED = 0x02


class ConfigKind(enum.IntEnum):
    """Which stored config ``read_config`` is asked for (``ARMS_CONFIG_*``)."""

    CANDIDATE = 1
    RUNNING = 2
    BACKUP = 3


class PingResult(Record):
    success: int
    failure: int


class TraceHop(Record):
    hop: int
    addr: str


class Callbacks:
    """Override the methods your device supports. See the module docstring for the rules."""

    #: ``ARMS_API_VERSION`` the application is written against (7: heartbeat statistics).
    version = 7

    # -- pull phase --------------------------------------------------------------------------

    def line_ctrl(self, action: LineAction, line: Line) -> LineStatus:
        """Bring a line up (CONNECT), down (DISCONNECT) or report it (STATUS).

        Called around every LS/RS attempt (§2.4). Return CONNECTED / DISCONNECTED when done,
        NEEDPOLL to be asked again with STATUS every second (bounded by the line timeout),
        AUTHFAIL / TIMEOUT / NOTAVAILABLE to make the agent try the next line. Raising, or
        returning anything else, aborts the pull with ``ARMS_ECALLBACK``. The default treats
        every line as already up (a host with a fixed uplink).
        """
        if action == LineAction.DISCONNECT:
            return LineStatus.DISCONNECTED
        return LineStatus.CONNECTED

    def config(self, module_id: int, version: str, info: str, action: ConfigAction,
               data: bytes, flags: Frag) -> None:
        """Store, apply, commit, revert or remove a module's config (§4.4 table).

        PULL_STORE_CONFIG: config from the RS at boot, store and apply it (``data`` may arrive
        in fragments, ``flags`` FIRST/FINISHED; a new FIRST restarts the module's buffer).
        PUSH_STORE_CONFIG: a pushed candidate, store it but do not apply. PUSH_EXEC_STORED_CONFIG
        (``module_id`` 0): apply every candidate, keep backups; raise
        :class:`~libarms.errors.ModSyncRequired` when the change needs a reboot.
        PUSH_REVERT_CONFIG (``module_id`` 0): restore the backups. REMOVE_MODULE: stop the module.
        Raising means rejected (pull: retried; push: error result, EXEC: rollback).
        The default accepts and discards everything.
        """

    def state(self, old: State, new: State) -> None:
        """The agent's state changed (called only on a change)."""

    def log(self, code: int, message: str) -> None:
        """A libarms log event (code per §4.8). The agent also logs through ``logging``."""

    # -- push phase --------------------------------------------------------------------------

    def read_config(self, module_id: int, kind: ConfigKind) -> Result:
        """Return the module's candidate/running/backup config (push read-storage)."""
        raise NotImplementedError

    def get_status(self, module_id: int, request: bytes) -> Result:
        """Return the module's status for a read-status push (``request`` may be empty)."""
        raise NotImplementedError

    def clear_status(self, module_id: int, request: bytes) -> Result:
        """Clear the module's status counters; return a short report (may be "")."""
        raise NotImplementedError

    def ping(self, dst: str, count: int, size: int) -> PingResult:
        """Ping ``dst`` ``count`` times with ``size``-byte payloads; return the counts."""
        raise NotImplementedError

    def traceroute(self, addr: str, count: int, maxhop: int) -> Sequence[TraceHop]:
        """Trace the route to ``addr`` (``count`` probes per hop, at most ``maxhop`` hops)."""
        raise NotImplementedError

    def dump_debug(self) -> Optional[Result]:
        """Return device debug text. ``None`` lets the agent build it from its own state."""
        return None

    def md_command(self, module_id: int, command: bytes) -> Result:
        """Run a device-specific command and return its output.

        Raise :class:`~libarms.errors.AppExecError` (with the output) when the command ran and
        failed: the server sees result 102 and the output. Any other exception → result 402.
        """
        raise NotImplementedError

    def app_event(self) -> int:
        """Called every app-event interval in the push loop.

        Return 0 (nothing), ``Err.EPULL`` to leave the loop and pull again, or ``Err.EPUSH`` to
        redo the push confirmation (e.g. the WAN address changed).
        """
        return 0

    def hb_store_statistics(self, hb) -> None:
        """Fill the next heartbeat: call ``hb.set_cpu_usage(...)``, ``hb.set_mem_usage(...)``,
        and the other ``set_*`` methods named after libarms' ``arms_hb_set_*``.

        Called ahead of every heartbeat after the push confirmation (§1.6). What is not set
        this time is not sent. The default sends an empty (alive-only) heartbeat.
        """

    # -- helpers -----------------------------------------------------------------------------

    def supports(self, name: str) -> bool:
        """True when the subclass overrides callback ``name`` (else the agent answers 505)."""
        return getattr(type(self), name, None) is not getattr(Callbacks, name, None)
