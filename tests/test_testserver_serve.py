"""``arms-testserver serve`` as one real process: LS, RS, push proxy, REST API, heartbeat
receiver, readings collector and dashboard. A real Agent is provisioned by it, waits for pushes
over the tunnel and sends heartbeats to the receiver the RS announced by default; the bridge's
real uploader posts readings to the collector; everything shows in the dashboard's JSON views,
which refuse requests without the right bearer token."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import time

import pytest
import requests

from libarms.heartbeat import HbServer, HeartbeatSender
from tests.conftest_testserver import (BRIDGE_TOKEN, DIST, OTHER, TIMEOUT, TOKEN, _cli,  # noqa: F401
                                       agent_in_push_wait, served)


def test_serve_ready_line_lists_every_service_and_each_one_listens(served):
    info = served.info
    for key in ("ls_url", "rs_url", "proxy_url", "tunnel_url", "rest_url", "dashboard_url",
                "collector_url", "heartbeat", "ca", "token_file"):
        assert info.get(key), key
    assert info["dashboard_url"] == info["rest_url"] + "/dashboard"
    assert info["collector_url"] == info["rest_url"] + "/collector/readings"
    for key in ("ls_url", "rs_url", "proxy_url", "rest_url"):
        host, port = info[key].split("//")[1].split("/")[0].rsplit(":", 1)
        socket.create_connection((host, int(port)), timeout=5).close()
    # the heartbeat port is a bound UDP socket: binding it again fails
    host, port = info["heartbeat"].rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with pytest.raises(OSError):
        s.bind((host, int(port)))
    s.close()
    with open(info["token_file"]) as f:
        assert json.load(f)["token"] == TOKEN
    assert os.stat(info["token_file"]).st_mode & 0o077 == 0


def test_dashboard_page_is_served_and_holds_no_data(served):
    r = requests.get(served.info["dashboard_url"], timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in r.headers["Content-Security-Policy"]
    assert "sessionStorage" in r.text and "Authorization" in r.text
    assert DIST not in r.text and TOKEN not in r.text
    root = requests.get(served.base + "/", allow_redirects=False, timeout=TIMEOUT)
    assert root.status_code == 302 and root.headers["Location"] == "/dashboard"


@pytest.mark.parametrize("path", ["/server/status", "/server/request-log", "/user/test/device",
                                  f"/user/test/device/{DIST}", "/user/test/request",
                                  f"/collector/readings?device={DIST}", "/collector/devices"])
@pytest.mark.parametrize("auth", [None, "Bearer wrong-token", f"Basic {TOKEN}", "Bearer "])
def test_dashboard_json_views_refuse_a_missing_or_wrong_token(served, path, auth):
    headers = {"Authorization": auth} if auth else {}
    r = requests.get(served.base + path, headers=headers, timeout=TIMEOUT)
    assert r.status_code == 401, (path, r.status_code)
    assert "token" in r.json()["error"]
    assert DIST not in r.text


def test_collector_refuses_readings_without_a_token_and_stores_none(served):
    body = {"device": "meter-unauth", "readings": [{"key": "k1", "kind": "instant_power_w",
                                                    "ts": "2026-01-01T00:00:00+09:00",
                                                    "value": 1}]}
    r = requests.post(served.info["collector_url"], json=body, timeout=TIMEOUT)
    assert r.status_code == 401
    r = requests.post(served.info["collector_url"], json=body, timeout=TIMEOUT,
                      headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401
    meters = served.get("/server/status")["collector"]["meters"]
    assert all(m["device"] != "meter-unauth" for m in meters)


def test_heartbeats_of_a_provisioned_agent_reach_the_default_receiver_and_show_in_dashboard(
        served, agent_in_push_wait):
    hb_host, hb_port = served.info["heartbeat"].rsplit(":", 1)
    dev = served.device()
    # the RS told the device to send to this process's receiver (no heartbeat was configured)
    assert dev["heartbeatServers"] == [{"host": hb_host, "port": int(hb_port), "interval": 1}]
    dev = served.wait_until("two heartbeats in the dashboard", lambda: (
        lambda d: d if (d["heartbeat"] or {}).get("packets", 0) >= 2 else None)(served.device()))
    m = dev["heartbeat"]["metrics"]
    assert m["cpu_usage/0"]["utilization"] == 42
    assert m["mem_usage/0"] == {"kind": "mem_usage", "index": 0, "used": 65536,
                                "available": 32768}
    assert m["traffic_rate/1"]["in_octets"] == 2048
    assert dev["heartbeat"]["recent"][0]["items"]
    assert time.time() - dev["heartbeat"]["last"] < 600
    # push wait over the tunnel, as the proxy sees it
    assert dev["push"]["reachable"] and dev["push"]["tunnels"] >= 1
    assert dev["push"]["confirmations"] >= 1
    # the requests the LS and RS served to it, newest first
    types = [r["type"] for r in dev["requests"]]
    assert {"rs-solicitation", "config-solicitation", "push-method-query"} <= set(types)
    assert dev["lastRequest"]["id"] == dev["requests"][0]["id"]
    assert dev["requestCount"] >= 3
    status = served.get("/server/status")["heartbeat"]
    assert status["address"] == served.info["heartbeat"]
    assert status["counters"]["accepted"] >= 2 and status["counters"]["bad_digest"] == 0
    summary = served.get("/user/test/device")["devices"]
    (mine,) = [d for d in summary if d["code"] == DIST]
    assert mine["heartbeat"]["packets"] >= 2 and mine["push"]["tunnels"] >= 1
    log = served.get("/server/request-log", params={"code": DIST.lower(), "limit": 2})["requests"]
    assert len(log) == 2 and log[0]["id"] > log[1]["id"] and log[0]["code"] == DIST


def test_heartbeat_with_the_wrong_passphrase_is_counted_and_not_shown(served,
                                                                        agent_in_push_wait):
    host, port = served.info["heartbeat"].rsplit(":", 1)
    before = served.get("/server/status")["heartbeat"]["counters"]["bad_digest"]
    sender = HeartbeatSender(DIST, [HbServer(host, int(port), "not-the-passphrase")], 0.05,
                             lambda hb: hb.set_cpu_usage(0, 99), lead=0.01)
    with sender:
        served.wait_until("bad digests counted", lambda: served.get("/server/status")[
            "heartbeat"]["counters"]["bad_digest"] >= before + 2)
    # only the agent's genuine heartbeats are shown
    assert served.device()["heartbeat"]["metrics"]["cpu_usage/0"]["utilization"] == 42


def test_md_command_sent_like_the_dashboard_form_shows_its_result_in_push_requests(
        served, agent_in_push_wait):
    r = served.http.post(served.base + "/user/test/request/md-command", timeout=TIMEOUT,
                         json={"code": DIST, "module": 1001, "command": "show status"})
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    done = served.get(f"/user/test/request/md-command/{rid}", params={"wait": 20})
    assert done["status"] == "done" and done["resultCode"] == 100, done
    listed = served.get("/user/test/request")["requests"]
    assert listed[0]["id"] == rid and listed[0]["method"] == "md-command"
    assert listed[0]["results"][0]["data"] == "module 1001 ran show status"
    assert served.device()["pushRequests"][0]["id"] == rid


def test_bridge_uploader_readings_appear_under_their_device_in_dashboard(served, tmp_path):
    from bridge.store import Store, halfhour_reading, instant_reading
    from bridge.upload import Uploader

    store = Store(str(tmp_path / "bridge.db"))
    meter = DIST.lower()          # the bridge's device_id names the SA (any case)
    slot = dt.datetime(2026, 11, 26, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=9)))
    store.add(instant_reading(meter, "instant_power_w", 345),
              halfhour_reading(meter, "halfhour_normal_kwh", slot, "1234.5", "poll"))
    up = Uploader(store, served.info["collector_url"], meter, BRIDGE_TOKEN)
    assert up.upload_once() == 2
    assert store.pending() == []
    readings = served.device()["readings"]
    assert readings["meter"] == meter and readings["count"] == 2
    assert readings["latest"]["instant_power_w"]["value"] == 345
    assert readings["latest"]["halfhour_normal_kwh"]["value"] == "1234.5"
    assert readings["latest"]["halfhour_normal_kwh"]["ts"] == slot.isoformat()
    # a resent batch is stored once
    again = served.http.post(served.info["collector_url"], timeout=TIMEOUT, json={
        "device": meter, "readings": [r.as_json() for r in store.all()]})
    assert again.json() == {"stored": 0, "duplicates": 2}
    assert served.device()["readings"]["count"] == 2
    store.close()


def test_readings_of_an_unknown_meter_are_listed_as_meters(served):
    r = served.http.post(served.info["collector_url"], timeout=TIMEOUT, json={
        "device": "meter-7", "readings": [
            {"key": "m7/a", "kind": "instant_current_a", "ts": "2026-11-26T09:00:00+09:00",
             "value": [1.5, 0.5], "source": "poll"},
            {"key": "m7/b", "kind": "instant_current_a", "ts": "2026-11-26T09:01:00+09:00",
             "value": [2.5, 0.5], "source": "poll"}]})
    assert r.json() == {"stored": 2, "duplicates": 0}
    doc = served.get("/user/test/device")
    (m7,) = [m for m in doc["meters"] if m["meter"] == "meter-7"]
    assert m7["count"] == 2 and m7["latest"]["instant_current_a"]["value"] == [2.5, 0.5]
    assert all(d["code"] != "METER-7" for d in doc["devices"])


def test_operator_heartbeat_config_replaces_the_default_and_can_be_reset(served):
    _cli(served.state, "add-device", OTHER, "--ls-key", "other-key")
    default = served.device(OTHER)["heartbeatServers"]
    assert default[0]["port"] == int(served.info["heartbeat"].rsplit(":", 1)[1])
    _cli(served.state, "set-service", OTHER, "--heartbeat", "192.0.2.7:16000:pw:30")
    assert served.device(OTHER)["heartbeatServers"] == [
        {"host": "192.0.2.7", "port": 16000, "interval": 30}]
    _cli(served.state, "set-service", OTHER, "--no-heartbeat")
    assert served.device(OTHER)["heartbeatServers"] == []
    _cli(served.state, "set-service", OTHER, "--default-heartbeat")
    assert served.device(OTHER)["heartbeatServers"] == default
    r = served.http.get(served.base + "/user/test/device/0001-0000-0000-0000-0000-0000-0000-0001",
                        timeout=TIMEOUT)
    assert r.status_code == 404
