"""The push half of the demo (``libarms.demo``): push wait over the https-tunnel, operations
started through the test server's REST API, and the reboot push that ends the loop."""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from typing import Callable

from .errors import Err
from .states import State
from .testserver.pushservice import INFO_FILE


def _rest(state_dir: str):
    with open(os.path.join(state_dir, INFO_FILE)) as f:
        info = json.load(f)
    host, port = info["rest_url"].split("//", 1)[1].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    hdr = {"Authorization": f"Bearer {info['token']}", "Content-Type": "application/json"}

    def call(method: str, body: dict) -> dict:
        path = f"/user/demo/request/{method}"
        conn.request("POST", path, json.dumps(body), hdr)
        rid = json.loads(conn.getresponse().read())["id"]
        conn.request("GET", f"{path}/{rid}?wait=30", headers=hdr)
        return json.loads(conn.getresponse().read())
    return info, call


def run_push_demo(agent, dist: str, state_dir: str, say: Callable[[str], None]) -> int:
    """Method query, event loop in a thread, four REST-driven pushes, reboot. 0 on success."""
    rc = agent.push_method_query()
    if rc != Err.OK:
        say(f"push method query FAILED: {Err(rc).name}")
        return 1
    say(f"push methods {', '.join(agent.ctx.push_methods)}; tunnel {', '.join(agent.ctx.tunnel_urls)}")
    result: dict = {}
    t = threading.Thread(target=lambda: result.setdefault("rc", agent.run()), name="demo-push", daemon=True)
    t.start()
    deadline = time.monotonic() + 30
    while agent.state != State.PUSH_WAIT and time.monotonic() < deadline and t.is_alive():
        time.sleep(0.05)
    if agent.state != State.PUSH_WAIT:
        say("push confirmation FAILED")
        return 1
    info, call = _rest(state_dir)
    say(f"REST API {info['rest_url']} (token in {os.path.join(state_dir, INFO_FILE)})")
    for method, body in [("md-command", {"module": 1001, "command": "show status"}),
                         ("read-status", {"modules": [1001]}),
                         ("ping", {"address": "192.0.2.1", "count": 3}),
                         ("reboot", {})]:
        t0 = time.monotonic()
        doc = call(method, dict(body, code=dist))
        ms = (time.monotonic() - t0) * 1000
        if doc.get("status") != "done":
            say(f"push {method} FAILED: {doc.get('error')}")
            return 1
        detail = "; ".join(r["data"] for r in doc.get("results") or [])
        if "success" in doc:
            detail = f"success {doc['success']} failure {doc['failure']}"
        say(f"push {method:11s} via {doc['via']}: result {doc['resultCode']} in {ms:.1f} ms  {detail}")
    t.join(30)
    say(f"event loop returned {Err(result.get('rc', 0)).name if 'rc' in result else 'nothing'}")
    return 0 if result.get("rc") == Err.EREBOOT else 1
