"""A simulated meter with a running bridge, in one call — for demos and for wiring tests.

    from bridge.demo import DemoMeter
    meter = DemoMeter(state_dir, collector_url="http://127.0.0.1:8090/collector/readings").start()
    meter.wait_joined(30)
    print(meter.commands(b"meter get E7 E8"))      # what an md-command handler returns
    meter.stop()

The simulator runs on a pty with ``time_scale`` (default 0.02: a 17.5 s scan takes 0.35 s) and
the bridge polls every ``poll_interval`` seconds; every reading goes through the durable queue
and, when ``collector_url`` is set, to the collector. ``commands`` is a
:class:`~bridge.mdcommand.MeterCommands`; ``callbacks()`` gives a ``libarms.Callbacks`` whose
``md_command`` answers ``meter ...`` commands.
"""

from __future__ import annotations

import os
import threading
from typing import Optional

from .config import BridgeConfig
from .mdcommand import MeterCallbacks, MeterCommands
from .service import Bridge
from .session import SessionConfig
from .sim import MeterConfig, Simulator, Timing

RBID = "0123456789ABCDEF0123456789ABCDEF"
PASSWORD = "0A1B2C3D4E5F"


class DemoMeter:
    def __init__(self, state_dir: str, collector_url: Optional[str] = None,
                 device_id: str = "demo-meter", profile: str = "bp35c2",
                 time_scale: float = 0.02, poll_interval: float = 5.0,
                 energy_interval: float = 30.0, meter: Optional[MeterConfig] = None,
                 min_request_gap: float = 0.5):
        os.makedirs(state_dir, exist_ok=True)
        self.sim = Simulator(profile, path=os.path.join(state_dir, "wisun-demo"),
                             time_scale=time_scale, meter=meter or MeterConfig(solar_peak=800),
                             timing=Timing())
        session = SessionConfig(port=self.sim.path, rbid=RBID, password=PASSWORD, drain_time=0.1,
                                request_timeout=10, min_request_gap=min_request_gap, retry_gap=1,
                                backoff=(1, 2, 5), pan_cache=os.path.join(state_dir, "pan.json"))
        self.bridge = Bridge(BridgeConfig(session=session, device_id=device_id,
                                          state_dir=state_dir, poll_interval=poll_interval,
                                          energy_interval=energy_interval,
                                          collector_url=collector_url))
        self.commands = MeterCommands(self.bridge, timeout=60)
        self._thread = threading.Thread(target=self.bridge.run, name="demo-bridge", daemon=True)

    def start(self) -> "DemoMeter":
        self.sim.start()
        self._thread.start()
        return self

    def wait_joined(self, timeout: float = 30.0) -> bool:
        return self.bridge.joined_event.wait(timeout)

    def callbacks(self, module_id: Optional[int] = None) -> MeterCallbacks:
        return MeterCallbacks(self.commands, module_id)

    def stop(self) -> None:
        self.bridge.shutdown()
        self._thread.join(10)
        self.sim.stop()
