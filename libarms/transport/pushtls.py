"""TLS of the push phase (W 2.2), on the agent's one TLS policy (:mod:`libarms.transport.tls`).

* Client connections (method query, confirmation, done requests, tunnels) use
  ``tls.client_context`` with the RS policy: only the RS CA as anchor, the SA certificate as
  client certificate, chain and dates checked (against the time floor when the clock is
  behind), TLS 1.2 or newer; :func:`~libarms.transport.simple.connect_tls` runs
  ``tls.verify_peer`` after the handshake.
* The https-simple listener presents the SA certificate and asks for a client certificate
  (optional, like libarms) that must chain to the RS CA when presented.
"""

from __future__ import annotations

import os
import ssl

from ..errors import ConfigError
from .tls import BUILD_TIME, TlsPolicy, client_context as _policy_context, load_cert_chain_pem

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing stays unloaded at run time (footprint)
    from typing import Optional

_NO_CHECK_TIME = 0x200000


def _text(pem) -> Optional[str]:
    if pem is None:
        return None
    return pem.decode("ascii") if isinstance(pem, (bytes, bytearray)) else pem


def policy(ca_pem, cert_pem=None, key_pem=None, time_floor: float = BUILD_TIME) -> TlsPolicy:
    if not ca_pem:
        raise ConfigError("no RS CA (rs-certificate from the LS): push connections cannot be verified")
    return TlsPolicy("RS", _text(ca_pem), _text(cert_pem), _text(key_pem), time_floor)


def client_context(p: TlsPolicy) -> ssl.SSLContext:
    try:
        return _policy_context(p)
    except ssl.SSLError as e:
        raise ConfigError(f"push TLS credentials cannot be used: {e}") from None


def server_context(cert_pem, key_pem, ca_pem, time_floor: float = BUILD_TIME) -> ssl.SSLContext:
    """https-simple listener: SA certificate; an RS client certificate is asked for, not
    required, and must chain to the RS CA when presented."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_pem:
        try:
            ctx.load_verify_locations(cadata=_text(ca_pem))
        except (ssl.SSLError, ValueError) as e:
            raise ConfigError(f"RS CA certificate cannot be loaded: {e}") from None
        ctx.verify_mode = ssl.CERT_OPTIONAL
        if TlsPolicy("RS", "", time_floor=time_floor).clock_behind():
            ctx.verify_flags |= _NO_CHECK_TIME      # clock without battery: dates unknowable
    try:
        load_cert_chain_pem(ctx, _text(cert_pem) or "", _text(key_pem) or "")
    except ssl.SSLError as e:
        raise ConfigError(f"SA certificate/key from the RS cannot be used: {e}") from None
    return ctx
