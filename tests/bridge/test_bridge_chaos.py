"""One running bridge through a seeded sequence of every fault: it keeps reading, never restarts."""

from __future__ import annotations

import random

import pytest

from bridge.sim import MeterConfig, Timing
from bridge.store import Store
from bridge_testlib import Runner, make_bridge, wait_for
from libarms.testserver.collector import CollectorServer

FAULTS = ["expire_session", "expire_session_fail", "terminate_session", "link_down",
          "garbage_line", "module_reset", "unplug", "tx_limit", "late_reply", "drop_replies",
          "duplicates"]


def inject(sim, bridge, fault: str) -> None:
    if fault == "expire_session_fail":
        # The bridge is out of the session only for milliseconds: watch the rejoin counter.
        rejoins = bridge.session.metrics["rejoins"]
        sim.set_fault(reauth_fail=True)
        sim.expire_session()
        assert wait_for(lambda: bridge.session.metrics["rejoins"] > rejoins, 30), bridge.session.metrics
        sim.set_fault(reauth_fail=False)
    elif fault == "link_down":
        sim.link_down(0.4)
    elif fault == "unplug":
        errors = bridge.session.metrics["port_errors"]
        sim.unplug()
        assert wait_for(lambda: bridge.session.metrics["port_errors"] > errors, 30), bridge.session.metrics
        sim.replug()
    elif fault == "tx_limit":
        sim.tx_limit(0.3)
    elif fault == "late_reply":
        sim.late_reply(1)
    elif fault == "drop_replies":
        sim.drop_replies(2)
    elif fault == "duplicates":
        sim.set_fault(duplicate_rate=1.0)
    else:
        getattr(sim, fault)()


@pytest.mark.parametrize("profile,hex_output,seed", [("bp35a1", True, 1), ("bp35c2", False, 2)])
def test_bridge_reads_through_every_fault_in_random_order(make_sim, tmp_path, profile, hex_output,
                                                         seed):
    sim = make_sim(profile, output_hex=hex_output, meter=MeterConfig(power_override=99),
                   timing=Timing(late_reply_delay=1.2))
    server = CollectorServer(str(tmp_path / "collector.sqlite")).start()
    bridge = make_bridge(sim, tmp_path, server, poll_interval=0.05, energy_interval=0.5)
    store = Store(bridge.cfg.queue_path)

    def powers():
        return sum(1 for r in store.all() if r.kind == "power_w")

    order = FAULTS[:]
    random.Random(seed).shuffle(order)
    try:
        with Runner(bridge) as running:
            assert wait_for(lambda: powers() >= 1, 30), running.session.metrics
            for fault in order:
                before = powers()
                inject(sim, running, fault)
                assert wait_for(lambda: powers() > before + 1, 30), (
                    f"no reading after {fault}: session {running.session.state.value}, "
                    f"ladder {running.session.ladder}, metrics {running.session.metrics}, "
                    f"simulator {sim.stats}, module session {sim.session_up}, "
                    f"faults {sim.module.f}")
                sim.set_fault(duplicate_rate=0.0)
            assert running.session.joined
        assert all(r.value == 99 for r in store.all() if r.kind == "power_w")
        assert wait_for(lambda: len(server.collector.store.readings("meter-1")) > 0, 30)
    finally:
        server.stop()
