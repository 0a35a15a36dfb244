"""Exceptions of the B-route bridge.

Built on the libarms public exception classes so that one ``except ProtocolError`` in an
application catches bad bytes from any peer, ARMS server or smart meter alike.
"""

from __future__ import annotations

from typing import Optional

from libarms import ConfigError, ProtocolError

__all__ = ["BridgeError", "ConfigError", "FrameError", "ModuleError", "NotJoined", "PortGone",
           "ProtocolError", "RequestFailed", "RequestTimeout", "UnsupportedModule"]


class BridgeError(Exception):
    """Base of the bridge's run-time failures (not bad bytes, not bad config)."""


class FrameError(ProtocolError):
    """Bytes from the Wi-SUN module or the meter that do not form a valid line/frame."""


class ModuleError(BridgeError):
    """The module answered ``FAIL ERxx`` (``code`` is the number, None for a bare FAIL)."""

    MEANING = {4: "command not supported", 5: "wrong number of arguments",
               6: "argument format invalid or out of range", 9: "UART input error",
               10: "command accepted but execution failed (wrong state or busy)"}

    def __init__(self, command: str, code: Optional[int]):
        self.command = command
        self.code = code
        what = self.MEANING.get(code, "reserved error") if code is not None else "bare FAIL"
        super().__init__(f"{command}: FAIL ER{code:02d} ({what})" if code is not None
                         else f"{command}: FAIL ({what})")


class UnsupportedModule(BridgeError):
    """The module is not an SKSTACK-IP text module (e.g. a J11 binary-UART module)."""


class PortGone(BridgeError):
    """The serial port failed (unplugged, EIO, closed): reopen it."""


class NotJoined(BridgeError):
    """A request was made while no PANA session is up; the poller re-queues it."""


class RequestTimeout(BridgeError):
    """A module command or an ECHONET request got no answer in time."""


class RequestFailed(BridgeError):
    """An ECHONET request failed after all its attempts (radio/meter problem)."""
