"""ARMS error codes and the exceptions that carry them.

The numeric codes are libarms 5.33's (``spec/arms-agent.md`` §4.9): ``level << 8 | type``.
Python code raises the exception classes below; the numeric value is kept on the exception so
that armsd, logs and tests can speak the same numbers as the C library.
"""

from __future__ import annotations

import enum


class Err(enum.IntEnum):
    """libarms return codes (``ARMS_E*``)."""

    OK = 0
    EFATAL = 0x400
    ETIMEOUT = 0x167
    EMAXRETRY = 0x265
    EDONTRETRY = 0x466
    ECALLBACK = 0x4FB
    EINVAL = 0x4FC
    ESYSTEM = 0x4FD
    EREBOOT = 0x68
    EPULL = 0x69
    EPUSH = 0x6C
    ESIZE = 0xFE
    ENOCHANGE = 0xFF
    EEXIST = 0x500
    EMODSYNC = 300
    EAPPEXEC = 301

    @property
    def level(self) -> int:
        """0 none, 1 low, 2 mid, 3 high, 4 fatal (``ARMS_ERR_LVL``)."""
        return (int(self) >> 8) & 0xFF

    @property
    def type(self) -> int:
        """``ARMS_ERR_TYPE``: the low byte."""
        return int(self) & 0xFF


class ArmsLibError(Exception):
    """Base of every exception this package raises on purpose."""


class ProtocolError(ArmsLibError):
    """Bytes from a peer that do not form a valid ARMS message (bad XML, size, framing)."""


class ConfigError(ArmsLibError):
    """Bad local configuration: initial config, daemon config file, arguments."""


class ArmsError(ArmsLibError):
    """An operation ended with a libarms error code (``code`` is an :class:`Err`)."""

    def __init__(self, code: int, message: str = ""):
        try:
            code = Err(code)
        except ValueError:
            pass
        self.code = code
        name = code.name if isinstance(code, Err) else str(code)
        super().__init__(f"{name}: {message}" if message else name)


class AppExecError(ArmsLibError):
    """Raised by a command callback whose command ran and failed (``ARMS_EAPPEXEC``).

    The server sees result 102 "Command Execute Error" together with ``output``.
    """

    def __init__(self, output: str | bytes = "", message: str = "command failed"):
        self.output = output
        super().__init__(message)


class ModSyncRequired(ArmsLibError):
    """Raised by ``Callbacks.config`` on EXEC: accepted, but a reboot is needed (``ARMS_EMODSYNC``)."""
