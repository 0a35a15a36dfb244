"""Everything one agent knows, in one object: ``Agent.ctx``.

The pull fills it, ``dump_state``/``restore_state`` save and reload the part that lets a
rebooted device skip the LS, and the push phase (``libarms/push.py``) reads what the RS gave:
the SA certificate and key, the RS key and CA, the RS pull URLs (method query / confirmation),
push addresses, heartbeat servers and retry parameters. It is a plain mutable record owned by
the agent thread; nothing in it does I/O.
"""

from __future__ import annotations


from ._record import Record, field
from .callbacks import Callbacks, Line
from .protocol.distid import DistributionId
from .protocol.pull import HeartbeatInfo, Module, TRIGGER_POWER_ON

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing stays unloaded at run time (footprint)
    from typing import Optional

#: libarms' compiled-in LS URLs (open-source build), used when no initial config is loaded.
DEFAULT_LS_URLS = ("https://202.221.49.106/arms.cgi", "https://202.221.51.6/arms.cgi")


class Context(Record, frozen=False):
    distribution_id: DistributionId
    callbacks: Callbacks

    # -- initial config and what the application registered ------------------------------------
    ls_urls: list[str] = field(default_factory=lambda: list(DEFAULT_LS_URLS))
    ls_retry_interval: int = 3          # stored base; x20 s in use
    ls_retry_max: int = 3               # stored base; x500 rounds in use
    ls_line_timeout: int = 30           # seconds of line polling in the LS phase
    anon_pppoe: Optional[tuple[str, str]] = field(default=None, repr=False)
    anon_pppoe_ipv6: Optional[tuple[str, str]] = field(default=None, repr=False)
    anon_mobile: object = field(default=None, repr=False)   # protocol.MobileAccount
    root_ca_pem: Optional[str] = None   # ARMS Root CA: the only anchor for the LS
    ls_sa_key: str = field(default="", repr=False)
    description: str = ""
    firmware_version: str = ""
    https_proxy: Optional[str] = None
    trigger: str = TRIGGER_POWER_ON
    lines: list[Line] = field(default_factory=list)     # LS-phase lines (pull argument)
    fragment: int = 0
    ls_index: int = 0                   # LS URL to try first

    # -- location config (LS answer) ------------------------------------------------------------
    rs_key: str = field(default="", repr=False)
    rs_urls: list[str] = field(default_factory=list)
    rs_certs: list[Optional[str]] = field(default_factory=list)
    rs_retry_max: int = 0
    rs_retry_interval: int = 0
    ll_timeout: int = 0
    rs_lines: list[Line] = field(default_factory=list)
    last_line: int = 0                  # RS-phase line that last worked
    current_rs: int = 0                 # RS URL to try first
    rs_endpoint: str = ""               # RS that last answered; non-empty = LS skip

    # -- service config (RS answer) -------------------------------------------------------------
    sa_cert_pem: Optional[str] = None
    sa_key_pem: Optional[str] = field(default=None, repr=False)
    modules: list[Module] = field(default_factory=list)
    heartbeat: list[HeartbeatInfo] = field(default_factory=list)
    rs_pull_urls: list[str] = field(default_factory=list)
    rs_pull_1st: int = -1               # method query starts here (-1: at 0)
    push_addresses: list[str] = field(default_factory=list)
    proposed_push_port: int = 0
    proposed_push_timeout: int = 0

    # -- push phase (filled by libarms/push.py) -------------------------------------------------
    push_methods: list[str] = field(default_factory=list)
    tunnel_urls: list[str] = field(default_factory=list)
    tunnel_echo_interval: int = 60
    sa_address: Optional[str] = None

    # -- bookkeeping -----------------------------------------------------------------------------
    time_floor: float = 0.0             # latest trustworthy UNIX time seen (see transport.tls)
    last_result: int = 0

    @property
    def rs_ca_pem(self) -> Optional[str]:
        """CA for every RS-side connection: the rs-certificate of RS #0 (as libarms)."""
        return self.rs_certs[0] if self.rs_certs else None

    def forget_rs(self) -> None:
        """RS -> LS fallback: the cached endpoint goes, the next pull starts at the LS."""
        self.rs_endpoint = ""

    def clear_location(self) -> None:
        self.rs_urls, self.rs_certs, self.rs_lines = [], [], []
        self.rs_key = ""
        self.current_rs = 0
        self.last_line = 0
