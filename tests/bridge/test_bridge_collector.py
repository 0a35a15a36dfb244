"""The test server's collector endpoint over real HTTP on loopback; pyudev dongle matching."""

from __future__ import annotations

import json

import pytest
import requests

from bridge.discovery import Port, classify, find_ports
from libarms.testserver.collector import MAX_BODY, CollectorServer


@pytest.fixture
def server(tmp_path):
    s = CollectorServer(str(tmp_path / "c.sqlite"), token="t0k").start()
    yield s
    s.stop()


def post(server, doc, token="t0k", raw=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if raw is not None:
        return requests.post(server.url, data=raw, headers=headers, timeout=5)
    return requests.post(server.url, json=doc, headers=headers, timeout=5)


def reading(key, kind="power_w", value=1):
    return {"key": key, "kind": kind, "ts": "2024-10-01T18:00:00+09:00", "value": value,
            "source": "poll"}


def test_collector_stores_per_device_and_is_idempotent_on_the_key(server):
    r = post(server, {"device": "m1", "readings": [reading("a"), reading("b", value=None)]})
    assert r.status_code == 200 and r.json() == {"stored": 2, "duplicates": 0}
    r = post(server, {"device": "m1", "readings": [reading("b"), reading("c")]})
    assert r.json() == {"stored": 1, "duplicates": 1}
    post(server, {"device": "m2", "readings": [reading("a")]})
    got = requests.get(server.url, params={"device": "m1"}, timeout=5).json()["readings"]
    assert [x["key"] for x in got] == ["a", "b", "c"]
    assert got[1]["value"] is None                  # no data stays null
    devices = requests.get(server.url.replace("/readings", "/devices"), timeout=5).json()
    assert {d["device"]: d["count"] for d in devices["devices"]} == {"m1": 3, "m2": 1}


@pytest.mark.parametrize("doc,raw,why", [
    (None, b"{not json", "not JSON"),
    ([1, 2], None, "JSON object"),
    ({"device": "", "readings": []}, None, "device"),
    ({"device": "m", "readings": [{"key": "k"}]}, None, "'kind'"),
    ({"device": "m", "readings": "x"}, None, "readings"),
])
def test_collector_rejects_malformed_uploads_with_a_reason(server, doc, raw, why):
    r = post(server, doc, raw=raw)
    assert r.status_code == 400 and why in r.json()["error"]


def test_collector_requires_the_token_and_bounds_the_body(server):
    assert post(server, {"device": "m", "readings": []}, token="wrong").status_code == 401
    assert post(server, {"device": "m", "readings": []}, token=None).status_code == 401
    r = post(server, None, raw=b"x" * (MAX_BODY + 1))
    assert r.status_code == 413


def test_collector_handle_is_usable_without_http(tmp_path):
    from libarms.testserver.collector import Collector, CollectorStore
    c = Collector(CollectorStore(str(tmp_path / "x.sqlite")))
    body = json.dumps({"device": "d", "readings": [reading("k")]}).encode()
    assert c.handle("POST", "/collector/readings", "", {}, body)[0] == 200
    status, ctype, out = c.handle("GET", "/collector/readings", "device=d", {}, b"")
    assert status == 200 and ctype == "application/json" and json.loads(out)["readings"][0]["key"] == "k"
    assert c.handle("DELETE", "/collector/readings", "", {}, b"")[0] == 404


@pytest.mark.parametrize("props,expected", [
    ({"DEVNAME": "/dev/ttyUSB0", "ID_VENDOR_ID": "0403", "ID_MODEL_ID": "6015",
      "ID_VENDOR": "FTDI", "ID_MODEL": "FT230X_Basic_UART"}, "usb-id"),
    ({"DEVNAME": "/dev/ttyUSB1", "ID_VENDOR_ID": "0403", "ID_MODEL_ID": "6001",
      "ID_MODEL": "RL7023_Stick-D_IPS"}, "name"),
    ({"DEVNAME": "/dev/ttyUSB2", "ID_VENDOR_ID": "0403", "ID_MODEL_ID": "6001",
      "ID_MODEL": "FT232R_USB_UART"}, None),
    ({"DEVNAME": "/dev/ttyACM0", "ID_VENDOR_ID": "2341", "ID_MODEL_ID": "0043"}, None),
    ({"DEVNAME": "/dev/ttyUSB3", "ID_MODEL": "RS-WSUHA-J11"}, None),
])
def test_dongles_are_recognised_from_udev_properties(props, expected):
    port = classify(props)
    assert (port.confidence if port else None) == expected
    if port:
        assert isinstance(port, Port) and port.device == props["DEVNAME"]


def test_discovery_runs_against_the_real_udev_database():
    ports = find_ports()            # this machine has no dongle; it must answer, not fail
    assert isinstance(ports, list) and all(isinstance(p, Port) for p in ports)


def test_collector_plugs_into_the_test_server_as_a_component(tmp_path):
    from libarms.testserver.collector import CollectorComponent
    from libarms.testserver.server import TestServer
    srv = TestServer(str(tmp_path / "ts"))
    comp = CollectorComponent()
    srv.add_component(comp)
    srv.start()
    try:
        r = requests.post(comp.url, json={"device": "m", "readings": [reading("k")]}, timeout=5)
        assert r.json() == {"stored": 1, "duplicates": 0}
        assert comp.store.readings("m")[0]["key"] == "k"
        assert (tmp_path / "ts" / "collector.sqlite").exists()
    finally:
        srv.stop()


def test_hotplug_watcher_starts_or_says_why_not_and_stops(caplog):
    from bridge.discovery import Watcher
    seen = []
    w = Watcher(lambda action, port: seen.append((action, port)))
    started = w.start()
    assert started in (True, False)
    if not started:
        assert "hot-plug monitoring unavailable" in caplog.text
    w.stop()
    assert seen == []                 # no dongle was plugged during the test
