"""Fixtures for the B-route bridge tests: a simulator on a real pty, fast session settings."""

from __future__ import annotations

import pytest

from bridge.session import Session
from bridge.sim import MeterConfig, Simulator, Timing
from bridge_testlib import fast_config


@pytest.fixture
def make_sim(tmp_path):
    """make_sim(profile, **kw) -> a started Simulator on tmp_path/wisun0 with zero radio delay."""
    sims = []

    def factory(profile: str = "bp35a1", meter: MeterConfig = None, timing: Timing = None, **kw):
        kw.setdefault("time_scale", 0.0)
        sim = Simulator(profile, path=str(tmp_path / f"wisun{len(sims)}"),
                        meter=meter or MeterConfig(), timing=timing or Timing(), **kw)
        sims.append(sim)
        return sim.start()

    yield factory
    for sim in sims:
        sim.stop()


@pytest.fixture
def make_session(tmp_path):
    sessions = []

    def factory(sim: Simulator, **over) -> Session:
        s = Session(fast_config(sim.path, tmp_path, **over))
        sessions.append(s)
        return s

    yield factory
    for s in sessions:
        s.stop.set()
        s.close()
