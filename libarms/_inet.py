"""Numeric IP address checks with ``socket.inet_pton`` (already loaded with ``ssl``), for the
device-side modules: the ``ipaddress`` module would stay resident in the daemon (~0.3 MiB) for a
handful of "is this a literal address" questions.

Same answers as ``ipaddress.ip_address`` for the strings ARMS carries: dotted quads without
leading zeros, IPv6 text forms (with an embedded IPv4 tail, and a ``%scope`` suffix that is
ignored), no surrounding blanks; anything else, including non-``str`` values, is not an address.
"""

from __future__ import annotations

import socket


def _pton(family: int, text: str) -> bytes:
    try:
        return socket.inet_pton(family, text)
    except (OSError, ValueError, TypeError):
        raise ValueError(f"{text!r} is not a numeric {'IPv4' if family == socket.AF_INET else 'IPv6'}"
                         " address") from None


def packed(text: str) -> bytes:
    """4 or 16 bytes of a numeric address (an IPv6 scope is dropped); ValueError otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a numeric address")
    if ":" in text:
        addr, sep, scope = text.partition("%")
        if sep and (not scope or "%" in scope or "/" in scope):
            raise ValueError(f"{text!r} has a bad IPv6 scope")
        return _pton(socket.AF_INET6, addr)
    try:
        return _pton(socket.AF_INET, text)
    except ValueError:
        raise ValueError(f"{text!r} is not a numeric IPv4 or IPv6 address") from None


def ip_version(text: str) -> int:
    """4 or 6 for a numeric address; ValueError for anything else (a host name, say)."""
    return 4 if len(packed(text)) == 4 else 6


def is_ip(text: str) -> bool:
    try:
        packed(text)
        return True
    except ValueError:
        return False


def is_ipv4(text: str) -> bool:
    return isinstance(text, str) and ":" not in text and is_ip(text)


def is_ipv6(text: str) -> bool:
    """An IPv6 address, with or without a ``%scope``."""
    return isinstance(text, str) and ":" in text and is_ip(text)


def canonical(text: str) -> str:
    """The usual spelling of a numeric address (``2001:DB8:0:0:0:0:0:1`` -> ``2001:db8::1``);
    ValueError for anything else."""
    raw = packed(text)
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


def same_address(a: str, b: str) -> bool:
    """Both numeric and the same address whatever their spelling (``::1`` and ``0:0::1``)."""
    try:
        return packed(a) == packed(b)
    except ValueError:
        return False
