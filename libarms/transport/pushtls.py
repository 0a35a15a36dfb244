"""TLS contexts of the push phase (W 2.2): client towards proxies/tunnels, https-simple server.

Trust anchor: exactly the RS CA. No host name check, no SNI. Validity dates are ignored like
libarms does. The SA certificate and key are presented as client certificate and used as the
https-simple server credentials. TLS 1.0 is allowed (the 5.33 device speaks only that), newer
versions are offered too.
"""

from __future__ import annotations

import os
import ssl
import tempfile
import warnings

from ..errors import ConfigError

#: OpenSSL's X509_V_FLAG_NO_CHECK_TIME: libarms accepts expired / not-yet-valid certificates.
_NO_CHECK_TIME = 0x200000


def _load_chain(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """Load a certificate and key held in memory (ssl wants files: a private temp file)."""
    fd, path = tempfile.mkstemp(prefix="libarms-sa-", suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(cert_pem.rstrip(b"\n") + b"\n" + key_pem)
        try:
            ctx.load_cert_chain(path)
        except ssl.SSLError as e:
            raise ConfigError(f"SA certificate/key from the RS cannot be used: {e}") from None
    finally:
        os.unlink(path)


def _common(ctx: ssl.SSLContext, ca_pem: bytes | None) -> None:
    with warnings.catch_warnings():        # TLS 1.0 is deprecated, and all 5.33 speaks
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
    try:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    except ssl.SSLError:
        pass
    if ca_pem:
        try:
            ctx.load_verify_locations(cadata=_text(ca_pem))
        except ssl.SSLError as e:
            raise ConfigError(f"RS CA certificate cannot be loaded: {e}") from None
    ctx.verify_flags |= _NO_CHECK_TIME


def _text(pem: bytes | str) -> str:
    return pem.decode("ascii") if isinstance(pem, (bytes, bytearray)) else pem


def client_context(ca_pem: bytes | None, cert_pem: bytes | None = None,
                   key_pem: bytes | None = None) -> ssl.SSLContext:
    """Client context: verify the server under ``ca_pem``, present the SA certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    _common(ctx, ca_pem)
    ctx.verify_mode = ssl.CERT_REQUIRED if ca_pem else ssl.CERT_NONE
    if cert_pem and key_pem:
        _load_chain(ctx, cert_pem, key_pem)
    return ctx


def server_context(cert_pem: bytes, key_pem: bytes, ca_pem: bytes | None) -> ssl.SSLContext:
    """https-simple listener: SA certificate; asks for a client certificate (optional) that
    must chain to the RS CA when presented."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _common(ctx, ca_pem)
    _load_chain(ctx, cert_pem, key_pem)
    ctx.verify_mode = ssl.CERT_OPTIONAL if ca_pem else ssl.CERT_NONE
    return ctx
