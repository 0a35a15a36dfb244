"""Helpers for the B-route bridge tests (imported by conftest.py and the test files)."""

from __future__ import annotations

import os
import threading
import time

from bridge.config import BridgeConfig
from bridge.service import Bridge
from bridge.session import SessionConfig

RBID = "0123456789ABCDEF0123456789ABCDEF"
PASSWORD = "0A1B2C3D4E5F"


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.01):
    """Poll ``predicate`` until true or ``timeout``; returns its last value (bounded)."""
    deadline = time.monotonic() + timeout
    value = predicate()
    for _ in range(int(timeout / interval) + 2):
        if value or time.monotonic() > deadline:
            break
        time.sleep(interval)
        value = predicate()
    return value


def fast_config(port: str, tmp_path, **over) -> SessionConfig:
    cfg = dict(port=port, rbid=RBID, password=PASSWORD, drain_time=0.02, command_timeout=3.0,
               request_timeout=1.0, request_retries=3, retry_gap=0.02, min_request_gap=0.0,
               failures_before_rejoin=3, backoff=(0.02, 0.05, 0.1), jitter=0.0,
               join_timeout=3.0, reauth_timeout=1.5, instance_list_wait=0.5,
               output_mode="keep", reset_on_start=True, pan_cache=str(tmp_path / "pan.json"))
    cfg.update(over)
    return SessionConfig(**cfg)


class Runner:
    """Runs a Bridge in a thread for a test and stops it afterwards."""

    def __init__(self, bridge):
        self.bridge = bridge
        self.thread = threading.Thread(target=bridge.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self.bridge

    def __exit__(self, *exc):
        self.bridge.shutdown()
        self.thread.join(10)
        assert not self.thread.is_alive(), "bridge did not stop"


def make_bridge(sim, tmp_path, collector=None, **over) -> Bridge:
    """A Bridge on the simulator with fast polls; uploads to ``collector`` when given."""
    cfg = BridgeConfig(session=fast_config(sim.path, tmp_path), device_id="meter-1",
                       state_dir=str(tmp_path / "state"), poll_interval=0.05, energy_interval=0.2,
                       collector_url=collector.url if collector else None,
                       upload_backoff=(0.05, 0.1))
    for k, v in over.items():
        setattr(cfg, k, v)
    cfg.session.pan_cache = os.path.join(cfg.state_dir, "pan.json")
    return Bridge(cfg)
