"""libarms: a clean-room, wire-compatible Python agent for IIJ's ARMS (SMF/SACM) protocol."""

from __future__ import annotations

__version__ = "0.1.0"
#: The libarms release whose wire behaviour this package reproduces.
LIBARMS_COMPAT_VERSION = "5.33 (Release)"

from .callbacks import (Callbacks, ConfigAction, ConfigKind, Frag, Line, LineAction,  # noqa: E402
                        LineStatus, LineType, PingResult, TraceHop)
from .errors import AppExecError, ArmsError, ConfigError, Err, ModSyncRequired, ProtocolError  # noqa: E402
from .states import State  # noqa: E402


def __getattr__(name):
    # Agent pulls in the transports; import it on first use so that `import libarms` stays light.
    if name == "Agent":
        from .agent import Agent
        return Agent
    raise AttributeError(name)


__all__ = ["Agent", "AppExecError", "ArmsError", "Callbacks", "ConfigAction", "ConfigError",
           "ConfigKind", "Err", "Frag", "Line", "LineAction", "LineStatus", "LineType",
           "ModSyncRequired", "PingResult", "ProtocolError", "State", "TraceHop"]
