"""SIGKILL of the real broute-bridge process in the middle of an upload: nothing lost, nothing doubled."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading


from bridge.store import Store
from bridge.upload import Uploader
from bridge_testlib import PASSWORD, RBID, wait_for
from libarms.testserver.collector import CollectorServer

LAUNCH = "import sys; from bridge.service import main; sys.exit(main(sys.argv[1:]))"


def write_config(path, port, state_dir, url):
    path.write_text(f"""
[serial]
port = {port}
drain_time = 0.02
command_timeout = 3
output_mode = keep
[broute]
id = {RBID}
password = {PASSWORD}
join_timeout = 3
reauth_timeout = 2
request_timeout = 1
retry_gap = 0.05
min_request_gap = 0
backoff = 0.05 0.1
instance_list_wait = 0.3
[poll]
interval = 0.05
energy_interval = 0.15
[upload]
url = {url}
batch = 8
backoff = 0.05 0.1
[bridge]
device_id = meter-crash
state_dir = {state_dir}
log_level = INFO
""")
    os.chmod(path, 0o600)


def start(cfg, log):
    return subprocess.Popen([sys.executable, "-c", LAUNCH, "-c", str(cfg)], stdout=log,
                            stderr=subprocess.STDOUT)


def test_sigkill_during_upload_loses_nothing_and_duplicates_nothing(make_sim, tmp_path):
    sim = make_sim("bp35c2")
    server = CollectorServer(str(tmp_path / "collector.sqlite")).start()
    posted = []                        # keys of every committed POST, in order
    first_committed, release = threading.Event(), threading.Event()

    def after_commit(device, readings):
        posted.append([r["key"] for r in readings])
        if len(posted) == 1:
            first_committed.set()      # stored at the collector, answer not yet sent...
            release.wait(30)           # ...and the bridge is killed before it arrives

    server.collector.after_commit = after_commit
    state = tmp_path / "state"
    cfg = tmp_path / "bridge.conf"
    write_config(cfg, sim.path, state, server.url)
    log = open(tmp_path / "bridge.log", "wb")
    procs = []
    try:
        p1 = start(cfg, log)
        procs.append(p1)
        assert first_committed.wait(30), (tmp_path / "bridge.log").read_text()
        p1.send_signal(signal.SIGKILL)
        p1.wait(10)
        release.set()
        first_batch = posted[0]
        queue = Store(str(state / "queue.sqlite"))
        assert all(queue.has(k) for k in first_batch)     # the queue kept what was in flight

        p2 = start(cfg, log)
        procs.append(p2)
        store = server.collector.store
        assert wait_for(lambda: len(store.readings("meter-crash")) >= len(first_batch) + 20, 30), \
            (tmp_path / "bridge.log").read_text()
        p2.send_signal(signal.SIGTERM)
        assert p2.wait(15) == 0
    finally:
        release.set()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(5)
        log.close()
    # What the second bridge did not ship before SIGTERM goes out with the next start.
    up = Uploader(Store(str(state / "queue.sqlite")), server.url, "meter-crash")
    for _ in range(1000):
        if up.upload_once() == 0:
            break
    server.stop()

    queued = Store(str(state / "queue.sqlite")).all()
    at_collector = server.collector.store.readings("meter-crash")
    assert sorted(r.key for r in queued) == sorted(r["key"] for r in at_collector)   # none lost
    assert len({r["key"] for r in at_collector}) == len(at_collector)                # none doubled
    resent = collections.Counter(k for batch in posted for k in batch)
    assert all(resent[k] == 2 for k in first_batch)        # the in-flight batch was sent again
    halfhours = [(r["kind"], r["ts"]) for r in at_collector if r["kind"].startswith("halfhour")]
    assert halfhours and len(set(halfhours)) == len(halfhours)
    assert {"power_w", "energy_normal_kwh"} <= {r["kind"] for r in at_collector}
