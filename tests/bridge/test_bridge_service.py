"""The poller service: durable queue, upload to the collector, back-fill, md-command."""

from __future__ import annotations

import datetime as dt
import json
import os
import re

import pytest

from bridge import meter as m
from bridge.mdcommand import MeterCallbacks, MeterCommands
from bridge.config import load
from bridge.errors import RequestFailed
from bridge.service import Bridge, ControlServer, main, query
from bridge.sim import MeterConfig, Timing
from bridge.store import Store
from bridge.upload import Uploader
from bridge_testlib import Runner, make_bridge, wait_for
from libarms import AppExecError, Callbacks
from libarms.testserver.collector import CollectorServer


@pytest.fixture
def collector(tmp_path):
    server = CollectorServer(str(tmp_path / "collector.sqlite")).start()
    yield server
    server.stop()


def kinds(readings) -> set:
    return {r["kind"] if isinstance(r, dict) else r.kind for r in readings}


def test_readings_are_queued_then_uploaded_once_each(make_sim, tmp_path, collector):
    sim = make_sim("bp35c2", meter=MeterConfig(power_override=742))
    bridge = make_bridge(sim, tmp_path, collector)
    store = collector.collector.store
    with Runner(bridge):
        assert wait_for(lambda: len(store.readings("meter-1")) >= 12, 15)
    # Drain what was queued after the last upload, as a restarted bridge would.
    up = Uploader(Store(bridge.cfg.queue_path), collector.url, "meter-1")
    for _ in range(100):
        if up.upload_once() == 0:
            break
    queued = Store(bridge.cfg.queue_path).all()
    uploaded = store.readings("meter-1")
    assert sorted(r.key for r in queued) == sorted(r["key"] for r in uploaded)
    assert Store(bridge.cfg.queue_path).counts()["pending"] == 0
    assert {"power_w", "current_r_a", "current_t_a", "energy_normal_kwh",
            "halfhour_normal_kwh"} <= kinds(uploaded)
    assert {r["value"] for r in uploaded if r["kind"] == "power_w"} == {742}


def test_meter_get_md_command_returns_live_values(make_sim, tmp_path):
    sim = make_sim("bp35a1", meter=MeterConfig(power_override=-250, two_wire=True))
    bridge = make_bridge(sim, tmp_path, poll_interval=3600, energy_interval=3600)
    commands = MeterCommands(bridge, timeout=10)
    app = MeterCallbacks(commands)
    assert isinstance(app, Callbacks) and app.supports("md_command")
    with Runner(bridge):
        assert bridge.joined_event.wait(10)
        out = json.loads(app.md_command(1, b"meter get E7 E8 power"))
        assert out["E7"] == {"name": "power_w", "value": -250}
        assert out["E8"]["value"]["t"] is None                     # 2-wire: no T phase, not 0
        assert json.loads(commands(b"meter get E9"))["E9"]["value"] is None   # not in 9F
        assert json.loads(commands(b"meter status"))["state"] == "joined"
        for bad in (b"meter get", b"meter get ZZ", b"meter frob", b"reboot"):
            with pytest.raises(AppExecError) as err:
                commands(bad)
            assert "error" in json.loads(err.value.output)
        sock = str(tmp_path / "ctl.sock")
        server = ControlServer(sock, commands).start()
        try:
            ok, text = query(sock, "meter get E7")
            assert ok and json.loads(text)["E7"]["value"] == -250
            ok, text = query(sock, "meter get XX")
            assert not ok and "bad EPC" in text
            # The armsd script-command hook path: request file in, result file out, exit code.
            conf = tmp_path / "hook.conf"
            conf.write_text(f"[serial]\nport = {sim.path}\n[broute]\nid = {'0' * 32}\n"
                            f"password = 0A1B2C3D4E5F\n[bridge]\ncontrol_socket = {sock}\n")
            req, res = tmp_path / "req", tmp_path / "res"
            req.write_bytes(b"meter get E7\n")
            assert main(["-c", str(conf), "--hook", "1", str(req), str(res)]) == 0
            assert json.loads(res.read_text())["E7"]["value"] == -250
            req.write_bytes(b"meter get QQ")
            assert main(["-c", str(conf), "--hook", "1", str(req), str(res)]) == 1
            assert "bad EPC" in json.loads(res.read_text())["error"]
        finally:
            server.close()


def test_md_command_fails_with_app_exec_error_while_the_meter_is_unreachable(make_sim, tmp_path):
    sim = make_sim("bp35a1")
    bridge = make_bridge(sim, tmp_path, poll_interval=3600, energy_interval=3600)
    commands = MeterCommands(bridge, timeout=10)
    with Runner(bridge):
        assert bridge.joined_event.wait(10)
        sim.link_down(30)
        with pytest.raises(AppExecError) as err:
            commands(b"meter get E7")
        assert "meter read failed" in json.loads(err.value.output)["error"]


@pytest.mark.parametrize("history", ["EC", "E2"])
def test_missed_half_hours_are_backfilled_from_the_meter_history(make_sim, tmp_path, history):
    unsupported = frozenset({0xEC, 0xED}) if history == "E2" else frozenset()
    sim = make_sim("bp35a1", meter=MeterConfig(unsupported=unsupported, seed=7))
    bridge = make_bridge(sim, tmp_path, poll_interval=3600, energy_interval=3600)
    store = Store(bridge.cfg.queue_path)
    with Runner(bridge):
        assert wait_for(lambda: store.last_ts("halfhour_normal_kwh") is not None, 30)
    first = dt.datetime.fromisoformat(store.last_ts("halfhour_normal_kwh"))
    sim.advance_clock(3 * 3600 + 60)                 # the bridge was down for 3 hours
    bridge2 = make_bridge(sim, tmp_path, poll_interval=3600, energy_interval=3600)
    with Runner(bridge2):
        assert wait_for(lambda: store.last_ts("halfhour_normal_kwh") > first.isoformat(), 30)
        assert wait_for(lambda: len([r for r in store.all()
                                     if r.kind == "halfhour_normal_kwh"]) >= 7, 30)
    halfhours = {dt.datetime.fromisoformat(r.ts): r for r in store.all()
                 if r.kind == "halfhour_normal_kwh"}
    # The real clock may cross another boundary meanwhile: at least the 7 slots, contiguous.
    expected = sorted(halfhours)
    assert expected[:7] == [first + dt.timedelta(minutes=30 * i) for i in range(7)]
    assert all(b - a == dt.timedelta(minutes=30) for a, b in zip(expected, expected[1:]))
    scaling = bridge2.session.meter.scaling
    for slot in expected:                                      # values are the meter's own
        assert halfhours[slot].value == str(scaling.kwh(sim.meter.raw(slot)))
    assert {halfhours[t].source for t in expected[1:6]} == {"backfill"}
    reverse = [r for r in store.all() if r.kind == "halfhour_reverse_kwh"]
    assert len(reverse) == len(expected)


def test_a_back_fill_interrupted_by_a_failed_request_is_retried_over_the_same_gap(make_sim,
                                                                                  tmp_path):
    sim = make_sim("bp35a1", meter=MeterConfig(seed=7))
    bridge = make_bridge(sim, tmp_path, poll_interval=3600, energy_interval=3600)
    store = Store(bridge.cfg.queue_path)
    with Runner(bridge):
        assert wait_for(lambda: store.last_ts("halfhour_normal_kwh") is not None, 30)
    first = dt.datetime.fromisoformat(store.last_ts("halfhour_normal_kwh"))
    sim.advance_clock(3 * 3600 + 60)
    bridge2 = make_bridge(sim, tmp_path, poll_interval=3600, energy_interval=3600)
    real_set, failed = bridge2.session.set, []

    def set_fails_once(props):                 # the radio loses the first history request
        if not failed:
            failed.append(props)
            raise RequestFailed("no answer to the history window request (injected)")
        return real_set(props)
    bridge2.session.set = set_fails_once
    with Runner(bridge2):
        assert wait_for(lambda: len([r for r in store.all()
                                     if r.kind == "halfhour_normal_kwh"]) >= 7, 30), store.all()
        assert bridge2.session.joined
    assert failed, "the back-fill never asked for the history"
    slots = sorted(dt.datetime.fromisoformat(r.ts) for r in store.all()
                   if r.kind == "halfhour_normal_kwh")
    assert slots[:7] == [first + dt.timedelta(minutes=30 * i) for i in range(7)]


def test_half_hour_notification_is_stored_once_even_when_repeated(make_sim, tmp_path):
    sim = make_sim("bp35c2", meter=MeterConfig(infc_retry=1), timing=Timing(infc_retry_after=0.2))
    bridge = make_bridge(sim, tmp_path, poll_interval=3600, energy_interval=3600)
    store = Store(bridge.cfg.queue_path)

    def halfhours():
        return [r for r in store.all() if r.kind == "halfhour_normal_kwh"]

    with Runner(bridge):
        # Start-up reads done (the last one is the clock check); no poll is due for an hour.
        assert wait_for(lambda: len(halfhours()) == 1
                        and "clock_drift_s" in bridge.session.metrics, 10)
        sim.set_fault(loss_rate=1.0)       # our INFC_Res is lost: the meter sends the INFC again
        sim.advance_clock(1800)
        assert wait_for(lambda: bridge.session.metrics["infc_answered"] >= 2, 10)
        assert bridge.session.metrics["notifications"] >= 2
    rows = halfhours()
    # One row per half hour although the INFC came twice (a real :00/:30 may add one more).
    assert len(rows) in (2, 3) and len({r.ts for r in rows}) == len(rows)
    assert sum(r.source == "notification" for r in rows) >= 1


def test_queue_survives_reopen_and_ignores_duplicate_keys(tmp_path):
    from bridge.store import halfhour_reading, instant_reading
    path = str(tmp_path / "q.sqlite")
    q = Store(path)
    t = dt.datetime(2024, 10, 1, 18, 0, tzinfo=m.JST)
    a = halfhour_reading("d", "halfhour_normal_kwh", t, "6513.9", "notification")
    assert q.add(a, instant_reading("d", "power_w", None)) == 2
    assert q.add(halfhour_reading("d", "halfhour_normal_kwh", t, "6513.9", "poll")) == 0
    q.close()
    q2 = Store(path)
    assert q2.counts() == {"total": 2, "pending": 2, "rejected": 0}
    assert [r.value for r in q2.pending()] == ["6513.9", None]      # no data stays None
    q2.mark_uploaded([a.key])
    assert q2.counts()["pending"] == 1
    assert q2._conn().execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_demo_meter_helper_runs_a_simulated_meter_end_to_end(tmp_path, collector):
    from bridge.demo import DemoMeter
    demo = DemoMeter(str(tmp_path / "demo"), collector_url=collector.url, time_scale=0.0,
                     min_request_gap=0.0,
                     meter=MeterConfig(power_override=555)).start()
    try:
        assert demo.wait_joined(30)
        assert json.loads(demo.callbacks().md_command(1, b"meter get E7"))["E7"]["value"] == 555
        assert wait_for(lambda: "power_w" in kinds(collector.collector.store.readings("demo-meter")),
                        15)
    finally:
        demo.stop()


def test_meter_clock_drift_is_measured_once_per_session(make_sim, tmp_path):
    sim = make_sim("bp35a1", meter=MeterConfig(clock_offset=-3600))
    bridge = make_bridge(sim, tmp_path, poll_interval=3600, energy_interval=3600)
    with Runner(bridge):
        assert wait_for(lambda: "clock_drift_s" in bridge.session.metrics, 10)
        assert -3660 <= bridge.session.metrics["clock_drift_s"] <= -3540


def test_sample_config_loads_and_bad_configs_say_what_is_wrong(tmp_path):
    import bridge
    from bridge.config import load
    from libarms import ConfigError
    sample = os.path.join(os.path.dirname(bridge.__file__), "broute-bridge.conf.sample")
    cfg = load(sample)
    assert cfg.session.rbid == "0123456789ABCDEF0123456789ABCDEF"
    assert cfg.session.scan_durations == (6, 7, 8) and cfg.poll_interval == 60
    assert "0A1B2C3D4E5F" not in repr(cfg)                      # secrets stay out of reprs
    bad = tmp_path / "bad.conf"
    for text, why in (("[broute]\nid = short\npassword = x\n[serial]\nport = /dev/x\n", "32 characters"),
                      ("[serial]\nport = /dev/x\n", "id and password"),
                      (open(sample).read().replace("interval = 60", "interval = soon"),
                       "[poll] interval")):
        bad.write_text(text)
        with pytest.raises(ConfigError, match=re.escape(why)):
            load(str(bad))


def test_sighup_reload_fixes_a_wrong_password_without_a_restart(make_sim, tmp_path):
    sim = make_sim("bp35c2", meter=MeterConfig(power_override=77))
    conf = tmp_path / "bridge.conf"

    def write(password, interval):
        conf.write_text(f"[serial]\nport = {sim.path}\ndrain_time = 0.02\noutput_mode = keep\n"
                        f"[broute]\nid = 0123456789ABCDEF0123456789ABCDEF\npassword = {password}\n"
                        f"join_timeout = 2\nrequest_timeout = 1\nmin_request_gap = 0\n"
                        f"backoff = 0.05 0.1\ninstance_list_wait = 0.2\n"
                        f"[poll]\ninterval = {interval}\n[bridge]\nstate_dir = {tmp_path / 'st'}\n")
    write("WRONGPASSWRD", 3600)
    bridge = Bridge(load(str(conf)))
    with Runner(bridge):
        assert wait_for(lambda: bridge.session.metrics["joins"] >= 2, 10)   # keeps failing
        assert not bridge.session.joined
        write("0A1B2C3D4E5F", 0.05)
        bridge.request_reload(str(conf))                 # what SIGHUP does
        assert bridge.joined_event.wait(10)
        assert bridge.cfg.poll_interval == 0.05
        assert wait_for(lambda: bridge.polls >= 3, 10)
        conf.write_text("[broute]\nid = broken\n")       # a bad file is refused, nothing stops
        bridge.request_reload(str(conf))
        polls = bridge.polls
        assert wait_for(lambda: bridge.polls > polls + 2, 10)
        assert bridge.cfg.session.password == "0A1B2C3D4E5F"
