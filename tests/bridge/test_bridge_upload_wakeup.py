"""The uploader sleeps on the queue without losing wake-ups and stops at once when asked."""

from __future__ import annotations

import threading

from bridge.store import Store, instant_reading
from bridge.upload import Uploader
from bridge_testlib import wait_for
from libarms.testserver.collector import CollectorServer


def test_a_reading_added_after_the_mark_wakes_the_waiter_instead_of_being_slept_through(tmp_path):
    store = Store(str(tmp_path / "queue.sqlite"))
    mark = store.added_mark()                      # taken before looking for pending readings
    assert store.pending() == []
    store.add(instant_reading("meter-1", "power_w", 5))   # lands before the waiter sleeps
    assert store.wait_for_pending(300, since=mark) is True
    stop = threading.Event()
    stop.set()
    assert store.wait_for_pending(300, since=store.added_mark(), stop=stop) is False


def test_an_idle_uploader_uploads_a_new_reading_and_stops_without_waiting_out_its_idle_time(
        tmp_path):
    server = CollectorServer(str(tmp_path / "collector.sqlite")).start()
    try:
        store = Store(str(tmp_path / "queue.sqlite"))
        up = Uploader(store, server.url, "meter-1", idle_wait=300, backoff=(0.05,))
        up.start()
        store.add(instant_reading("meter-1", "power_w", 7))
        assert wait_for(lambda: len(server.collector.store.readings("meter-1")) == 1, 30)
        assert wait_for(lambda: store.counts()["pending"] == 0, 30)
        up.stop.set()
        up.join(30)
        assert not up._thread.is_alive(), "the uploader slept through its stop event"
    finally:
        server.stop()
