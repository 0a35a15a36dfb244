"""Client TLS for the agent: one trust anchor per connection kind, never an off switch.

* LS connections trust only the registered ARMS Root CA; every RS, ARMS proxy and tunnel
  connection trusts only the RS CA from the LS answer (``rs-certificate`` of RS #0).
* The chain and the validity dates are always checked; TLS 1.2 or newer.
* Host names: libarms never checks them, so servers built for it may carry no name. When the
  server certificate names IP addresses (subjectAltName), the URL's host must be one of them;
  when it names none, the connection goes ahead and the log says the name check could not apply.
* A LS certificate must also carry a subject CN starting ``Location Server `` or
  ``ARMS Root CA`` (the libarms rule, ``spec/arms-wire.md`` §2.2).
* Clock without battery: when the system clock is behind the *time floor* (the latest time this
  device trusted: the package build date, raised on every verified contact), OpenSSL is told not
  to compare dates with the bogus clock and the dates of the server certificate and of the anchor
  are checked here against the floor instead: a certificate that expired before the floor is
  refused, whatever the clock says. The log says so.

``cryptography`` is imported only in that last case (to read the anchor's dates).
"""

from __future__ import annotations

import functools
import logging
import os
import ssl
import time

from .. import _inet
from .._record import Record, field

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing stays unloaded at run time (footprint)
    from typing import Callable, Optional

log = logging.getLogger("libarms.tls")

#: The package build date (UTC): the time floor is never older than this.
BUILD_TIME = 1795564800.0     # 2026-11-25T00:00:00Z

#: OpenSSL X509_V_FLAG_NO_CHECK_TIME: set only when the clock is behind the floor, and then the
#: dates are checked in :func:`verify_peer` against the floor.
_NO_CHECK_TIME = 0x200000

LS_SUBJECT_PREFIXES = ("Location Server ", "ARMS Root CA")


def _now() -> float:
    """The system clock (one place, so tests can play a device that booted in 1970)."""
    return time.time()


class TlsVerifyError(ssl.SSLError):
    """The server's certificate was refused after the handshake (name, CN rule, dates)."""


class TlsPolicy(Record):
    """How to verify one kind of server. ``role`` is "LS" or "RS" (RS, proxies, tunnels)."""

    role: str
    ca_pem: str
    client_cert_pem: Optional[str] = None
    client_key_pem: Optional[str] = field(default=None, repr=False)
    time_floor: float = BUILD_TIME

    def floor(self) -> float:
        return max(self.time_floor, BUILD_TIME)

    def clock_behind(self, now: Optional[float] = None) -> bool:
        return (_now() if now is None else now) < self.floor()


@functools.lru_cache(maxsize=16)
def _context(ca_pem: str, cert_pem: Optional[str], key_pem: Optional[str], no_time: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False          # names are checked in verify_peer (see module doc)
    ctx.verify_mode = ssl.CERT_REQUIRED
    try:
        ctx.load_verify_locations(cadata=ca_pem)
    except (ssl.SSLError, ValueError) as e:
        raise ssl.SSLError(f"the trust anchor is not a PEM certificate: {e}") from None
    if no_time:
        ctx.verify_flags |= _NO_CHECK_TIME
    if cert_pem and key_pem:
        load_cert_chain_pem(ctx, cert_pem, key_pem)
    return ctx


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        for _ in range(len(data) + 1):          # os.write may write less than asked
            if not view:
                return fd
            view = view[os.write(fd, view):]
        raise OSError("short writes to a memory file")
    except BaseException:
        os.close(fd)
        raise


def load_cert_chain_pem(ctx: ssl.SSLContext, cert_pem: str, key_pem: str) -> None:
    """``ctx.load_cert_chain`` from PEM text. ssl reads credentials from files only: on Linux
    they go to anonymous memory files (``memfd_create``, never on a disk) read through
    /proc/self/fd; elsewhere to a private temporary directory removed at once (tempfile, with
    shutil, is imported only on that path). ssl.SSLError when they do not load."""
    fds = []
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        try:
            fds.append(_memfd("libarms-cert", cert_pem.encode("utf-8")))
            fds.append(_memfd("libarms-key", key_pem.encode("utf-8")))
        except OSError:                         # e.g. ENOSYS on an old kernel
            for fd in fds:
                os.close(fd)
            fds = []
    if fds:
        try:
            ctx.load_cert_chain(f"/proc/self/fd/{fds[0]}", f"/proc/self/fd/{fds[1]}")
        finally:
            for fd in fds:
                os.close(fd)
        return
    import tempfile
    with tempfile.TemporaryDirectory(prefix="libarms-") as d:
        os.chmod(d, 0o700)
        cp, kp = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
        with open(cp, "w") as f:
            f.write(cert_pem)
        fd = os.open(kp, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key_pem)
        ctx.load_cert_chain(cp, kp)


def client_context(policy: TlsPolicy, now: Optional[float] = None) -> ssl.SSLContext:
    """An SSLContext for ``policy`` (cached). ssl.SSLError when the anchor or the client
    credentials do not load."""
    return _context(policy.ca_pem, policy.client_cert_pem, policy.client_key_pem,
                    policy.clock_behind(now))


def check_client_credentials(cert_pem: str, key_pem: str, ca_pem: str) -> None:
    """ssl.SSLError unless the SA certificate and key load as a pair."""
    _context(ca_pem, cert_pem, key_pem, False)


def _names(cert: dict) -> tuple[list, list[str]]:
    ips, dns = [], []
    for kind, value in cert.get("subjectAltName", ()):
        if kind == "IP Address":
            try:
                ips.append(_inet.canonical(value.strip()))
            except ValueError:
                pass
        elif kind == "DNS":
            dns.append(value)
    return ips, dns


def _common_names(cert: dict) -> list[str]:
    return [v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"]


def _anchor_not_after(ca_pem: str) -> float:
    from cryptography import x509     # only on the clock-behind path
    c = x509.load_pem_x509_certificate(ca_pem.encode("ascii"))
    return c.not_valid_after_utc.timestamp()


def verify_peer(sock: ssl.SSLSocket, policy: TlsPolicy, host: str, *,
                now: Optional[float] = None, note: Callable[[str], None] = log.info) -> None:
    """Checks done after the handshake (OpenSSL already verified the chain). Raises
    :class:`TlsVerifyError`; ``note`` receives the informational lines for the agent's log."""
    cert = sock.getpeercert()
    if not cert:
        raise TlsVerifyError(f"{policy.role} {host}: server sent no certificate")
    where = f"{policy.role} {host}"
    if policy.role == "LS":
        cns = _common_names(cert)
        if not any(cn.startswith(p) for cn in cns for p in LS_SUBJECT_PREFIXES):
            raise TlsVerifyError(f"{where}: certificate subject CN {cns} is not 'Location Server ...' "
                                 "or 'ARMS Root CA ...' as ARMS requires for the LS")
    ips, dns = _names(cert)
    if ips:
        if not any(_inet.same_address(host, ip) for ip in ips):
            raise TlsVerifyError(f"{where}: certificate names {', '.join(map(str, ips))}, not {host}")
    else:
        note(f"{where}: certificate names no IP address (DNS names: {dns or 'none'}); "
             "host name check could not apply, chain and dates verified")
    if policy.clock_behind(now):
        floor = policy.floor()
        clock = _now() if now is None else now
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(floor))
        not_after = ssl.cert_time_to_seconds(cert["notAfter"])
        if not_after < floor:
            raise TlsVerifyError(f"{where}: certificate expired ({cert['notAfter']}) before the last "
                                 f"trusted time {stamp}")
        if _anchor_not_after(policy.ca_pem) < floor:
            raise TlsVerifyError(f"{where}: trust anchor expired before the last trusted time {stamp}")
        note(f"{where}: system clock {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(clock))} is "
             f"behind the last trusted time {stamp}; certificate dates checked against {stamp}")


def recv_until(sock: ssl.SSLSocket, deadline: float, feed: "Callable[[bytes], object]",
               done: "Callable[[], bool]", on_eof: "Optional[Callable[[], None]]" = None,
               timeout_error: "Callable[[str], BaseException]" = TimeoutError,
               what: str = "waiting for the peer") -> None:
    """Read ``sock`` into ``feed`` until ``done()`` or the peer closes (then ``on_eof()``), all
    before the ``time.monotonic()`` ``deadline``; past it, raise ``timeout_error("timed out
    " + what)``. A TLS close_notify counts as the peer's close."""
    while not done():
        left = deadline - time.monotonic()
        if left <= 0:
            raise timeout_error(f"timed out {what}")
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except ssl.SSLZeroReturnError:
            data = b""
        if not data:
            if on_eof is not None:
                on_eof()
            return
        feed(data)
