"""A small line format for what the agent and armsd keep on disk (the state blob's payload,
armsd's module list), instead of JSON: the ``json`` package would stay resident in a daemon
that writes one such file per pull.

One record per line, its fields separated by one TAB; a field is any ``str``, written in UTF-8
with four escapes: backslash ``\\\\``, TAB ``\\t``, LF ``\\n``, CR ``\\r``. So a field never
contains a raw TAB or line break, and ``load(dump(records)) == records`` for any strings.
``load`` refuses (:class:`LineFormatError`, a ValueError) input over its size limit, bytes that
are not UTF-8, and unknown or dangling escapes; it never guesses.
"""

from __future__ import annotations

import re

#: Default limit of ``load``: larger input is refused before it is decoded.
MAX_SIZE = 1 << 20

_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_UNESCAPES = {v[1]: k for k, v in _ESCAPES.items()}
_NEEDS_ESCAPE = re.compile(r"[\\\t\n\r]")
_ESCAPE_SEQ = re.compile(r"\\(.?)", re.S)


class LineFormatError(ValueError):
    """Bytes that are not a valid record file (too large, not UTF-8, a bad escape)."""


def escape(field: str) -> str:
    return _NEEDS_ESCAPE.sub(lambda m: _ESCAPES[m.group()], field)


def unescape(field: str) -> str:
    def one(m):
        try:
            return _UNESCAPES[m.group(1)]
        except KeyError:
            raise LineFormatError(f"bad escape {m.group()!r} in field {field[:40]!r}") from None
    return _ESCAPE_SEQ.sub(one, field)


def dump(records) -> bytes:
    """Records (sequences of str) -> bytes, one line each, every line ending in LF."""
    out = []
    for rec in records:
        out.append("\t".join(escape(f) for f in rec))
        out.append("\n")
    return "".join(out).encode("utf-8")


def load(data: bytes, limit: int = MAX_SIZE) -> list:
    """Bytes from :func:`dump` -> list of lists of str (an empty line is one empty field)."""
    if len(data) > limit:
        raise LineFormatError(f"{len(data)} bytes, more than the {limit} accepted")
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as e:
        raise LineFormatError(f"not UTF-8: {e.reason} at byte {e.start}") from None
    if text and not text.endswith("\n"):
        raise LineFormatError("truncated: the last line has no line end")
    lines = text.split("\n")[:-1]
    return [[unescape(f) for f in line.split("\t")] for line in lines]
