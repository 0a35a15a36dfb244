"""A reading the collector refuses as malformed is set aside instead of blocking the queue; a
collector that refuses everything is backed off from, not emptied into the reject pile; a
batch too large is split. Real collector (HTTP on loopback), real SQLite queue."""

from __future__ import annotations

import threading

import pytest

from bridge.store import Reading, Store, instant_reading
from bridge.upload import Uploader
from bridge_testlib import wait_for
from libarms.testserver import collector as collector_mod
from libarms.testserver.collector import CollectorServer


@pytest.fixture
def server(tmp_path):
    srv = CollectorServer(str(tmp_path / "collector.sqlite")).start()
    yield srv
    srv.stop()


def poison(device: str) -> Reading:
    # the collector takes keys of 1..256 characters: this one can never be stored
    return Reading(f"{device}/power_w/" + "x" * 300, device, "power_w",
                   "2026-11-26T00:00:00.000+00:00", 1, "poll")


def stored_keys(server, device: str) -> set:
    return {r["key"] for r in server.collector.store.readings(device)}


def test_one_malformed_reading_is_set_aside_and_the_readings_around_it_are_uploaded(
        tmp_path, server):
    store = Store(str(tmp_path / "queue.sqlite"))
    good = [instant_reading("meter-1", "power_w", i) for i in range(9)]
    bad = poison("meter-1")
    store.add(*good[:4], bad, *good[4:])
    up = Uploader(store, server.url, "meter-1", batch=100, backoff=(0.05,))

    assert up.upload_once() == 10                  # 9 acknowledged + 1 set aside
    assert stored_keys(server, "meter-1") == {r.key for r in good}
    assert store.counts() == {"total": 10, "pending": 0, "rejected": 1}
    assert up.rejected == 1 and up.uploaded == 9

    # the queue keeps flowing behind the rejected reading
    later = instant_reading("meter-1", "power_w", 99)
    store.add(later)
    assert up.upload_once() == 1
    assert later.key in stored_keys(server, "meter-1")


def test_a_rejected_reading_is_pending_again_at_the_next_start_and_never_pruned(tmp_path, server):
    path = str(tmp_path / "queue.sqlite")
    store = Store(path)
    store.add(poison("meter-1"), instant_reading("meter-1", "power_w", 1))
    Uploader(store, server.url, "meter-1").upload_once()
    assert store.counts()["rejected"] == 1
    assert store.prune(0) == 1                     # only the uploaded one goes
    assert store.counts() == {"total": 1, "pending": 0, "rejected": 1}

    again = Store(path)                            # a restart of the bridge
    up = Uploader(again, server.url, "meter-1", idle_wait=300, backoff=(0.05,))
    up.start()
    try:
        assert wait_for(lambda: up.rejected == 1, 30), "the rejected reading was not retried"
        assert again.counts() == {"total": 1, "pending": 0, "rejected": 1}
    finally:
        up.stop.set()
        up.join(30)


def test_a_collector_refusing_everything_is_backed_off_from_with_the_readings_kept_queued(
        tmp_path):
    # every reading of this device is refused: the device id is too long for the collector
    device = "m" * 200
    srv = CollectorServer(str(tmp_path / "collector.sqlite")).start()
    try:
        store = Store(str(tmp_path / "queue.sqlite"))
        store.add(*[instant_reading(device, "power_w", i) for i in range(20)])
        up = Uploader(store, srv.url, device, batch=100, backoff=(0.05,))
        with pytest.raises(Exception) as exc:
            up.upload_once()
        assert "400" in str(exc.value)
        assert up.rejected == Uploader.MAX_REFUSED_IN_A_ROW
        assert store.counts() == {"total": 20, "pending": 20 - Uploader.MAX_REFUSED_IN_A_ROW,
                                  "rejected": Uploader.MAX_REFUSED_IN_A_ROW}
        # later rounds send the batch whole and back off: nothing more is set aside
        with pytest.raises(Exception):
            up.upload_once()
        assert up.rejected == Uploader.MAX_REFUSED_IN_A_ROW
    finally:
        srv.stop()


def test_a_batch_too_large_for_the_collector_is_split_and_the_batch_size_lowered(
        tmp_path, server, monkeypatch):
    store = Store(str(tmp_path / "queue.sqlite"))
    readings = [instant_reading("meter-1", "power_w", i) for i in range(40)]
    store.add(*readings)
    one = len(Uploader(store, server.url, "meter-1")._body_bytes(readings[:1]))
    # room for about 12 readings a request
    monkeypatch.setattr(collector_mod, "MAX_BODY", one * 12)
    up = Uploader(store, server.url, "meter-1", batch=40, backoff=(0.05,))
    done = 0
    for _ in range(20):
        n = up.upload_once()
        if n == 0:
            break
        done += n
    assert done == 40
    assert up.batch <= 12
    assert stored_keys(server, "meter-1") == {r.key for r in readings}
    assert store.counts() == {"total": 40, "pending": 0, "rejected": 0}


def test_the_uploader_thread_keeps_going_after_a_rejection(tmp_path, server):
    store = Store(str(tmp_path / "queue.sqlite"))
    up = Uploader(store, server.url, "meter-1", idle_wait=300, backoff=(0.05,),
                  stop=threading.Event())
    up.start()
    try:
        store.add(poison("meter-1"))
        assert wait_for(lambda: up.rejected == 1, 30)
        r = instant_reading("meter-1", "power_w", 5)
        store.add(r)
        assert wait_for(lambda: r.key in stored_keys(server, "meter-1"), 30)
    finally:
        up.stop.set()
        up.join(30)
