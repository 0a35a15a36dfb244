"""Initial-config plain text (``spec/arms-agent.md`` §3.2, ``spec/arms-wire.md`` App. B).

::

    <LS URL 1>            1 to 4 URLs
    <empty line>
    <retry interval base> (x 20 s in use)
    <retry max base>      (x 500 rounds in use)
    <empty line>          everything below is optional
    <anonymous PPPoE account>
    <anonymous PPPoE password>
    <empty line>  or  <PPPoE-IPv6 account> <PPPoE-IPv6 password> <empty line>
    <mobile telno> <cid> <APN> <pdp-type> <account> <password>   (one per line)
"""

from __future__ import annotations


from .._record import Record, field
from ..errors import ConfigError
from .http import parse_url

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing stays unloaded at run time (footprint)
    from typing import Optional

MAX_URLS = 4
MAX_LINE = 256


class MobileAccount(Record):
    telno: str
    cid: int
    apn: str
    pdp: str
    account: str
    password: str = field(repr=False)


class InitialConfig(Record):
    ls_urls: tuple[str, ...]
    retry_interval: int = 3
    retry_max: int = 3
    pppoe: Optional[tuple[str, str]] = field(default=None, repr=False)
    pppoe_ipv6: Optional[tuple[str, str]] = field(default=None, repr=False)
    mobile: Optional[MobileAccount] = None

    def to_text(self) -> str:
        out = list(self.ls_urls) + ["", str(self.retry_interval), str(self.retry_max)]
        if self.pppoe or self.pppoe_ipv6 or self.mobile:
            out.append("")
            out += list(self.pppoe or ("", ""))
            if self.pppoe_ipv6:
                out += list(self.pppoe_ipv6)
            out.append("")
            if self.mobile:
                m = self.mobile
                out += [m.telno, str(m.cid), m.apn, m.pdp, m.account, m.password]
        return "".join(l + "\n" for l in out)


def _int(line: str, what: str, n: int) -> int:
    try:
        return int(line.strip())
    except ValueError:
        raise ConfigError(f"initial config line {n}: {what} must be a decimal number, got {line!r}") from None


def parse_initial_config(text: "str | bytes") -> InitialConfig:
    """Parse the plain-text initial config; ConfigError says which line is wrong."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("ascii")
        except UnicodeDecodeError:
            raise ConfigError("initial config must be ASCII text (the encrypted vendor form "
                              "is not supported)") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for i, l in enumerate(lines, 1):
        if len(l) > MAX_LINE:
            raise ConfigError(f"initial config line {i} is longer than {MAX_LINE} characters")
        if "\r" in l:
            raise ConfigError(f"initial config line {i} contains a CR: use LF line ends")
    pos = 0

    def at_end() -> bool:
        return pos >= len(lines)

    urls = []
    while True:
        if at_end():
            raise ConfigError("initial config: the LS URL list must end with an empty line")
        l = lines[pos]
        pos += 1
        if l == "":
            break
        if len(urls) >= MAX_URLS:
            raise ConfigError(f"initial config line {pos}: at most {MAX_URLS} LS URLs are allowed")
        try:
            parse_url(l)
        except ValueError as e:
            raise ConfigError(f"initial config line {pos}: {e}") from None
        urls.append(l)
    if not urls:
        raise ConfigError("initial config: no LS URL before the first empty line")
    if len(lines) - pos < 2:
        raise ConfigError("initial config: retry interval and retry max lines are missing")
    interval = _int(lines[pos], "the retry interval", pos + 1)
    rmax = _int(lines[pos + 1], "the retry max", pos + 2)
    if interval < 0 or rmax < 0:
        raise ConfigError("initial config: retry interval and retry max must not be negative")
    pos += 2
    cfg = dict(ls_urls=tuple(urls), retry_interval=interval, retry_max=rmax)
    if at_end():
        return InitialConfig(**cfg)
    if lines[pos] != "":
        raise ConfigError(f"initial config line {pos + 1}: expected an empty line after the retry max")
    pos += 1
    if at_end():
        return InitialConfig(**cfg)
    if len(lines) - pos < 2:
        raise ConfigError(f"initial config line {pos + 1}: the PPPoE account needs a password line")
    cfg["pppoe"] = (lines[pos], lines[pos + 1])
    pos += 2
    if at_end():
        return InitialConfig(**cfg)
    if lines[pos] != "":
        if len(lines) - pos < 3 or lines[pos + 2] != "":
            raise ConfigError(f"initial config line {pos + 1}: expected an empty line, or a PPPoE-IPv6 "
                              "account, its password and an empty line")
        cfg["pppoe_ipv6"] = (lines[pos], lines[pos + 1])
        pos += 3
    else:
        pos += 1
    if at_end():
        return InitialConfig(**cfg)
    if len(lines) - pos < 6:
        raise ConfigError(f"initial config line {pos + 1}: the mobile section needs 6 lines "
                          "(telno, cid, APN, pdp-type, account, password)")
    m = lines[pos:pos + 6]
    cfg["mobile"] = MobileAccount(m[0], _int(m[1], "the mobile cid", pos + 2), m[2], m[3], m[4], m[5])
    pos += 6
    if not at_end() and any(l.strip() for l in lines[pos:]):
        raise ConfigError(f"initial config line {pos + 1}: unexpected data after the mobile section")
    return InitialConfig(**cfg)
