"""Find Wi-SUN USB dongles with pyudev and follow hot-plug (broute.md §6.2 item 5).

Matching, in order:

1. the USB vendor/product id table ``USB_IDS`` (extend it with ``extra_ids``), then
2. the udev model/vendor strings against ``NAME_HINTS`` (for dongles whose USB bridge chip is a
   generic one, e.g. an FTDI FT230X, the product string names the module).

USB id table (only ids with a public source are listed; "(uncertain)" ones come from a single
report and are accepted only together with a matching product string):

| VID:PID   | USB bridge        | dongles seen with it                                          |
|-----------|-------------------|---------------------------------------------------------------|
| 0403:6015 | FTDI FT230X/FT-X  | Tessera RL7023 Stick-D/IPS and Stick-D/DSS (broute.md §1.2)   |
| 0403:6001 | FTDI FT232R       | BP35A1 on USB adapter boards (uncertain)                      |

Those FTDI ids are shared with countless other serial adapters, so a bare FTDI match is reported
as ``confidence="usb-id"`` and a name match as ``"name"``; the service takes the best match and
``--port`` always overrides discovery.

The hot-plug :class:`Watcher` is a hint only: the session reopens the port with backoff by
itself; the watcher just shortens the wait when a dongle comes back.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Callable, Iterable, Optional

log = logging.getLogger("bridge.discovery")

USB_IDS = {
    ("0403", "6015"): ("FTDI FT230X", True),
    ("0403", "6001"): ("FTDI FT232R", False),     # needs a name hint too
}
NAME_HINTS = ("RL7023", "BP35A1", "BP35C0", "BP35C2", "WSUHA", "WI-SUN", "WISUN", "WSR35")
J11_HINTS = ("J11",)


@dataclasses.dataclass(frozen=True)
class Port:
    device: str
    vid: str
    pid: str
    description: str
    confidence: str            # "name" | "usb-id"


def classify(props: dict) -> Optional[Port]:
    """Decide from a udev property dict whether this tty is a Wi-SUN dongle."""
    device = props.get("DEVNAME")
    if not device:
        return None
    vid = (props.get("ID_VENDOR_ID") or "").lower()
    pid = (props.get("ID_MODEL_ID") or "").lower()
    names = " ".join(props.get(k, "") for k in ("ID_MODEL", "ID_MODEL_FROM_DATABASE", "ID_VENDOR",
                                                 "ID_SERIAL")).upper()
    desc = " ".join(x for x in (props.get("ID_VENDOR", ""), props.get("ID_MODEL", "")) if x)
    if any(h in names for h in J11_HINTS):
        log.warning("%s looks like a J11 binary-UART module (%s): not supported", device, desc)
        return None
    if any(h in names for h in NAME_HINTS):
        return Port(device, vid, pid, desc or "Wi-SUN dongle", "name")
    known = USB_IDS.get((vid, pid))
    if known and known[1]:
        return Port(device, vid, pid, desc or known[0], "usb-id")
    return None


def _props(dev) -> dict:
    props = dict(dev.properties)
    props.setdefault("DEVNAME", dev.device_node or "")
    return props


def find_ports(extra_ids: Iterable[tuple[str, str]] = ()) -> list[Port]:
    """Wi-SUN dongles present now, best first (name matches before bare USB-id matches)."""
    for vid, pid in extra_ids:
        USB_IDS[(vid.lower(), pid.lower())] = ("configured", True)
    found = []
    try:
        import pyudev
        ctx = pyudev.Context()
        for dev in ctx.list_devices(subsystem="tty"):
            port = classify(_props(dev))
            if port:
                found.append(port)
    except Exception as exc:            # no udev database (containers): nothing to discover
        log.warning("pyudev discovery failed: %s", exc)
    found.sort(key=lambda p: (p.confidence != "name", p.device))
    return found


class Watcher:
    """Calls ``on_change(action, port)`` for tty add/remove events of Wi-SUN dongles."""

    def __init__(self, on_change: Callable[[str, Port], None]):
        self.on_change = on_change
        self._observer = None

    def start(self) -> bool:
        try:
            import pyudev
            ctx = pyudev.Context()
            monitor = pyudev.Monitor.from_netlink(ctx)
            monitor.filter_by(subsystem="tty")
        except Exception as exc:
            log.warning("hot-plug monitoring unavailable: %s", exc)
            return False

        def handle(dev):
            action = dev.action
            port = classify(_props(dev))
            if port and action in ("add", "remove"):
                log.info("Wi-SUN dongle %s: %s", action, port.device)
                self.on_change(action, port)

        self._observer = pyudev.MonitorObserver(monitor, callback=handle, name="udev-watch")
        self._observer.daemon = True
        self._observer.start()
        return True

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.send_stop()
