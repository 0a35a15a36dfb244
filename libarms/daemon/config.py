"""armsd's config file: ``name: value`` lines, the key names of IIJ's armsd 0.9.0.

Format (``spec/arms-agent.md`` §5.3): one ``name: value`` per line; the name is the text before
the first ``:``, the value the rest, both stripped; empty lines and lines starting with ``#``
are ignored. Unknown names and lines without ``:`` are warned about and skipped (as armsd does);
a value that cannot be used (a bad number, a bad Distribution ID) is a :class:`ConfigError`
naming the file and line, so that a typo never silently changes behaviour. Keys that are absent
take their defaults, also on a reload (SIGHUP).

Every key, ours included, is explained in ``libarms/daemon/data/armsd.conf.sample``.
"""

from __future__ import annotations

import os
import re

from .. import _record
from .._record import Record, field
from ..callbacks import Line, LineType
from ..errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing stays unloaded at run time (footprint)
    from typing import Optional

MAX_FILE_SIZE = 256 * 1024
MAX_LINE = 1000

_DISTID_RE = re.compile(r"^[0-9A-Fa-f]{1,4}(?:-[0-9A-Fa-f]{1,4}){7}$")

#: Script keys of armsd 0.9.0 (``script-debug`` is 0.8.0's) plus ours (marked).
SCRIPT_KEYS = (
    "script-start", "script-reconfig", "script-stop", "script-status", "script-command",
    "script-clear", "script-line-ctrl", "script-state-changed", "script-app-event",
    "script-post-pull", "script-reboot", "script-debug",
    # ours: heartbeat statistics, ping and traceroute by hook instead of the built-ins
    "script-heartbeat", "script-ping", "script-traceroute",
)

_LINE_WORDS = {
    "pppoe": LineType.PPPOE, "pppoe6": LineType.PPPOE_IPV6, "anonpppoe": LineType.ANONPPPOE,
    "anonpppoe6": LineType.ANONPPPOE_IPV6, "dhcp": LineType.DHCP, "mobile": LineType.MOBILE,
    "anonmobile": LineType.ANONMOBILE, "static": LineType.STATIC, "ra": LineType.RA,
}


class DaemonConfig(Record):
    """The parsed config file. Field names are the keys with ``-`` turned into ``_``."""

    distribution_id: str = ""
    ls_sa_key: str = field(default="", repr=False)
    path_root_ca: Optional[str] = None
    path_iconfig: Optional[str] = None
    path_state_cache: str = "/var/lib/armsd/state"
    path_pid: str = "/run/armsd.pid"
    path_work_dir: str = "/var/lib/armsd"              # ours (armsd: -b or /tmp/armsd.<pid>)
    https_proxy_url: Optional[str] = field(default=None, repr=False)
    https_proxy_url_ls: Optional[str] = field(default=None, repr=False)
    https_proxy_url_rs: Optional[str] = field(default=None, repr=False)
    app_event_interval: float = 300.0
    timeout: float = 30.0
    timeout_kill: float = 5.0                                   # ours
    binary: int = 0
    hb_disk_usage: tuple = ("/",)
    hb_traffic_if: tuple = ("eth0", "eth1", "eth2")
    hb_dummy: int = 0
    pull_timeout: int = 0                                       # ours (0 = libarms default 6 h)
    push_port: int = 0                                          # ours (armsd: -p)
    ls_lines: tuple = (Line(LineType.DHCP, 0), Line(LineType.RA, 0))   # ours (armsd: built in)
    log_level: str = "info"                                     # ours
    scripts: dict = field(default_factory=dict)                 # key -> absolute path
    source: str = ""
    warnings: tuple = ()

    def script(self, key: str) -> Optional[str]:
        return self.scripts.get(key)

    def secrets(self) -> list[str]:
        """Values that must never appear in a log line."""
        out = [self.ls_sa_key]
        for line in self.ls_lines:
            out.append(line.pppoe_pass)
        for url in (self.https_proxy_url, self.https_proxy_url_ls, self.https_proxy_url_rs):
            if url:
                m = re.match(r"^[a-z]+://([^@/]*)@", url)
                if m and ":" in m.group(1):
                    out.append(m.group(1).split(":", 1)[1])
        return [s for s in out if s]


def normalize_distribution_id(text: str) -> str:
    """``1-1234-...`` → ``0001-1234-...`` in upper case; ConfigError if it is not 8 hex groups."""
    text = text.strip()
    if not _DISTID_RE.match(text):
        raise ConfigError(f"distribution id {text!r} is not eight groups of hex digits "
                          "separated by '-' (e.g. 0001-0000-0101-0000-0000-0000-DEAD-BEEF)")
    return "-".join("%04X" % int(g, 16) for g in text.split("-"))


def parse_line_spec(text: str) -> Line:
    """An ``ls-lineN`` value: ``<type> <ifindex> [fields...]`` (see the sample config)."""
    words = text.split()
    if len(words) < 2 or words[0].lower() not in _LINE_WORDS:
        raise ConfigError(f"line {text!r}: expected '<type> <ifindex> ...' with type one of "
                          + ", ".join(sorted(_LINE_WORDS)))
    ltype = _LINE_WORDS[words[0].lower()]
    ifindex = _int(words[1], "ifindex")
    rest = words[2:]
    if ltype in (LineType.PPPOE, LineType.PPPOE_IPV6):
        if len(rest) != 2:
            raise ConfigError(f"line {words[0]}: expected '{words[0]} <ifindex> <id> <password>'")
        return Line(ltype, ifindex, pppoe_id=rest[0], pppoe_pass=rest[1])
    if ltype == LineType.MOBILE:
        if len(rest) != 6:
            raise ConfigError("line mobile: expected 'mobile <ifindex> <telno> <cid> <apn> <pdp> "
                              "<id> <password>'")
        return Line(ltype, ifindex, telno=rest[0], cid=_int(rest[1], "cid"), apn=rest[2],
                    pdp=rest[3], pppoe_id=rest[4], pppoe_pass=rest[5])
    if ltype == LineType.STATIC:
        if len(rest) != 1:
            raise ConfigError("line static: expected 'static <ifindex> <ipaddress>'")
        return Line(ltype, ifindex, ipaddr=rest[0])
    if rest:
        raise ConfigError(f"line {words[0]}: takes only an ifindex")
    return Line(ltype, ifindex)


def _int(value: str, what: str) -> int:
    try:
        return int(value.strip(), 10)
    except ValueError:
        raise ConfigError(f"{what}: {value!r} is not a decimal integer") from None


def _float(value: str, what: str) -> float:
    try:
        v = float(value.strip())
    except ValueError:
        raise ConfigError(f"{what}: {value!r} is not a number") from None
    if not (v == v) or v in (float("inf"), float("-inf")):
        raise ConfigError(f"{what}: {value!r} is not a finite number")
    return v


def parse_config(text: str, source: str = "<config>", base_dir: str = "/") -> DaemonConfig:
    """Parse the text of a config file. Relative paths are taken from ``base_dir``."""
    values: dict = {}
    scripts: dict = {}
    disks: dict = {0: "/"}
    ifaces: dict = {0: "eth0", 1: "eth1", 2: "eth2"}
    ls_lines: dict = {}
    warnings: list = []

    def where(n: int) -> str:
        return f"{source}:{n}"

    def path(v: str) -> str:
        return os.path.normpath(os.path.join(base_dir, v))

    for n, raw in enumerate(text.splitlines(), 1):
        if len(raw) > MAX_LINE:
            raise ConfigError(f"{where(n)}: line longer than {MAX_LINE} characters")
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if ":" not in line:
            warnings.append(f"{where(n)}: no ':' in line, ignored")
            continue
        key, value = (s.strip() for s in line.split(":", 1))
        key = key.lower()
        try:
            if key == "distribution-id":
                values["distribution_id"] = normalize_distribution_id(value)
            elif key == "ls-sa-key":
                if len(value) > 64:
                    raise ConfigError("ls-sa-key is longer than 64 characters")
                values["ls_sa_key"] = value
            elif key in ("path-root-ca", "path-iconfig", "path-state-cache", "path-pid",
                         "path-work-dir"):
                if value:
                    values[key.replace("-", "_")] = path(value)
            elif key in ("https-proxy-url", "https-proxy-url-ls", "https-proxy-url-rs"):
                if value and not re.match(r"^https?://[^\s]+$", value):
                    raise ConfigError(f"{key}: {value!r} is not an http:// or https:// URL")
                values[key.replace("-", "_")] = value  # empty = explicitly no proxy
            elif key == "app-event-interval":
                v = _float(value, key)
                if not 0.1 <= v <= 600:
                    warnings.append(f"{where(n)}: app-event-interval {v} outside 0.1..600 s; "
                                    "the library default (60 s) applies")
                    v = 60.0
                values["app_event_interval"] = v
            elif key in ("timeout", "timeout-kill"):
                v = _float(value, key)
                if v <= 0:
                    raise ConfigError(f"{key} must be positive")
                if key == "timeout" and v >= 60:
                    warnings.append(f"{where(n)}: timeout {v:g} s is not below the agent's 60 s "
                                    "callback limit: the server may get an error while the "
                                    "hook still runs")
                values[key.replace("-", "_")] = v
            elif key in ("binary", "hb-dummy"):
                values[key.replace("-", "_")] = _int(value, key)
            elif key in ("pull-timeout", "push-port"):
                v = _int(value, key)
                if key == "pull-timeout" and v and not 60 <= v <= 86400:
                    raise ConfigError("pull-timeout must be 0 (6 h) or 60..86400 seconds")
                if key == "push-port" and not 0 <= v <= 65535:
                    raise ConfigError("push-port must be 0..65535")
                values[key.replace("-", "_")] = v
            elif key in ("hb-disk-usage", "hb-disk-usage0", "hb-disk-usage1", "hb-disk-usage2"):
                idx = int(key[-1]) if key[-1].isdigit() else 0
                disks[idx] = value or None
            elif key in ("hb-traffic-if0", "hb-traffic-if1", "hb-traffic-if2", "hb-traffic-if3"):
                ifaces[int(key[-1])] = value or None
            elif re.fullmatch(r"ls-line[0-4]", key):
                ls_lines[int(key[-1])] = parse_line_spec(value) if value else None
            elif key == "log-level":
                if value.lower() not in ("debug", "info", "warning", "error"):
                    raise ConfigError("log-level must be debug, info, warning or error")
                values["log_level"] = value.lower()
            elif key in SCRIPT_KEYS:
                if value:
                    scripts[key] = path(value)
            else:
                warnings.append(f"{where(n)}: unknown key {key!r}, ignored")
        except ConfigError as e:
            raise ConfigError(f"{where(n)}: {e}") from None

    values["hb_disk_usage"] = tuple(disks[i] for i in sorted(disks) if disks[i])
    values["hb_traffic_if"] = tuple(ifaces[i] for i in sorted(ifaces) if ifaces[i])
    if ls_lines:
        values["ls_lines"] = tuple(ls_lines[i] for i in sorted(ls_lines) if ls_lines[i])
    return DaemonConfig(scripts=scripts, source=source, warnings=tuple(warnings), **values)


def load_config(path: str, distribution_id: Optional[str] = None) -> DaemonConfig:
    """Read and parse ``path``; ``distribution_id`` (``-i``) overrides the file's."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_SIZE + 1)
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    if len(data) > MAX_FILE_SIZE:
        raise ConfigError(f"config file {path} is larger than {MAX_FILE_SIZE} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {e.start})") from None
    cfg = parse_config(text, source=path, base_dir=os.path.dirname(os.path.abspath(path)))
    if distribution_id:
        cfg = _record.replace(cfg, distribution_id=normalize_distribution_id(distribution_id))
    if not cfg.distribution_id:
        raise ConfigError(f"{path}: no distribution-id (set it in the file or give -i)")
    return cfg
