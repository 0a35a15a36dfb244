"""md-command handler: ``meter get E7 E8``, ``meter status``, ``meter help``.

Plugs into the agent through the public contract only::

    from libarms import Callbacks
    from bridge.mdcommand import MeterCallbacks, MeterCommands

    class App(MeterCallbacks):            # or: call MeterCommands from your own md_command
        ...
    agent = Agent(..., callbacks=App(MeterCommands(bridge)))

Output is JSON text (US-ASCII). A command that ran and failed (meter unreachable, unknown EPC)
raises :class:`libarms.AppExecError` with a JSON error document as its output, so the server sees
result 102 and the reason.
"""

from __future__ import annotations

import json
from typing import Optional

from libarms import AppExecError, Callbacks

from . import meter as m

USAGE = ("usage: meter get <EPC> [<EPC> ...]   (hex EPCs, e.g. 'meter get E7 E8'; names: power, "
         "current, energy, reverse, halfhour)\n       meter status\n       meter help")

ALIASES = {"power": [0xE7], "current": [0xE8], "energy": [0xE0], "reverse": [0xE3],
           "halfhour": [0xEA, 0xEB]}
MAX_EPCS = 12


class MeterCommands:
    """Callable: ``handler(b"meter get E7 E8") -> str``. ``reader`` is a running Bridge."""

    def __init__(self, reader, timeout: float = 90.0):
        self.reader = reader
        self.timeout = timeout

    def __call__(self, command) -> str:
        if isinstance(command, bytes):
            command = command.decode("ascii", "replace")
        words = command.strip().split()
        if not words or words[0] != "meter":
            raise AppExecError(_err("not a meter command", USAGE), "unknown command")
        if len(words) == 1 or words[1] == "help":
            return USAGE
        if words[1] == "status":
            return json.dumps(self.reader.status(), default=str, sort_keys=True)
        if words[1] == "get":
            epcs = self._epcs(words[2:])
            try:
                values = self.reader.read_now(epcs, self.timeout)
            except Exception as exc:
                raise AppExecError(_err(f"meter read failed: {exc}"), "meter read failed") from exc
            return json.dumps({f"{e:02X}": {"name": m.NAMES.get(e, f"epc_{e:02X}"),
                                            "value": values.get(e)} for e in epcs},
                              sort_keys=True, default=str)
        raise AppExecError(_err(f"unknown meter subcommand {words[1]!r}", USAGE),
                           "unknown subcommand")

    @staticmethod
    def _epcs(words) -> list:
        epcs: list = []
        for w in words:
            if w.lower() in ALIASES:
                epcs += ALIASES[w.lower()]
                continue
            try:
                v = int(w, 16)
            except ValueError:
                raise AppExecError(_err(f"bad EPC {w!r}", USAGE), "bad EPC") from None
            if not 0x80 <= v <= 0xFF:
                raise AppExecError(_err(f"EPC {w!r} outside 80..FF", USAGE), "bad EPC")
            epcs.append(v)
        if not epcs:
            raise AppExecError(_err("no EPC given", USAGE), "no EPC")
        if len(epcs) > MAX_EPCS:
            raise AppExecError(_err(f"at most {MAX_EPCS} EPCs per command"), "too many EPCs")
        return list(dict.fromkeys(epcs))


def _err(message: str, usage: Optional[str] = None) -> str:
    doc = {"error": message}
    if usage:
        doc["usage"] = usage
    return json.dumps(doc)


class MeterCallbacks(Callbacks):
    """A :class:`libarms.Callbacks` whose ``md_command`` runs meter commands.

    ``module_id``: answer only for that module id (None = every module)."""

    def __init__(self, commands: MeterCommands, module_id: Optional[int] = None):
        self.meter_commands = commands
        self.meter_module_id = module_id

    def md_command(self, module_id: int, command: bytes):
        if self.meter_module_id is not None and module_id != self.meter_module_id:
            raise AppExecError(_err(f"module {module_id} has no meter"), "no meter")
        return self.meter_commands(command)
