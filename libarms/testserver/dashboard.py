"""The test server's web dashboard and the read-only views behind it, on the REST API's port.

:class:`Dashboard` is a :class:`~libarms.testserver.server.TestServer` component added after the
:class:`~libarms.testserver.pushservice.PushService` (whose REST API it extends with
:meth:`~libarms.testserver.rest.RestApi.add_route`). It also mounts the readings collector
(``collector.py``) there, so one port serves operators, the page and the bridges.

Resources (JSON ones need ``Authorization: Bearer <token>``, the REST API's token)::

    GET  /                               302 to /dashboard
    GET  /dashboard                      the page (static/dashboard.html; it holds no data and
                                         asks for the token, kept in sessionStorage)
    GET  /server/status                  URLs and ports, heartbeat counters, collector meters
    GET  /server/request-log[?code=ID&limit=N]
                                         ARMS requests the LS and RS served, newest first
    GET  /user/{user}/device             every device: registration, last ARMS request, push
                                         reachability (tunnels, https-simple endpoint), last
                                         heartbeat and its metrics, latest meter readings
    GET  /user/{user}/device/{code}      one device, plus its recent requests, heartbeats,
                                         readings and the user's push requests to it
    POST /collector/readings             readings from a bridge (collector.py's API; the token
    GET  /collector/readings?device=ID   is the REST token or the collector token)
    GET  /collector/devices

Pushes are started with the REST API's own ``POST /user/{user}/request/{method}``; the user's
requests of every method are listed by ``GET /user/{user}/request``.

Meter readings belong to a device when the bridge's ``device_id`` is the device's distribution
id (any case); readings of other ids are listed as ``meters``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
from importlib import resources
from typing import Optional
from urllib.parse import unquote, urlencode

from .collector import Collector, CollectorStore
from .rest import Body, HttpError, _limit

log = logging.getLogger("libarms.testserver.dashboard")

PAGE = "dashboard.html"
#: The page is one file with inline script and style; it may only talk to its own origin.
PAGE_HEADERS = (
    ("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; "
     "style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
     "form-action 'none'; frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
)


def load_page() -> bytes:
    return resources.files("libarms.testserver").joinpath("static", PAGE).read_bytes()


def _request_row(r) -> dict:
    return {"id": r["id"], "ts": r["ts"], "role": r["role"], "path": r["path"], "peer": r["peer"],
            "code": r["distribution_id"], "type": r["type"], "trigger": r["trig"],
            "httpStatus": r["http_status"], "resultCode": r["result_code"], "size": r["size"]}


_LOG_SQL = ("SELECT id, ts, role, path, peer, distribution_id, type, trig, http_status, "
            "result_code, length(body) AS size FROM request_log")


class Dashboard:
    """See the module docstring. ``heartbeat``: the HeartbeatReceiver (or None); ``info``: the
    dict of URLs the ``serve`` command prints (shown by ``/server/status``)."""

    def __init__(self, push, *, heartbeat=None, collector_db: Optional[str] = None,
                 collector_token: Optional[str] = None, info: Optional[dict] = None):
        self.push = push
        self.heartbeat = heartbeat
        self.collector_db = collector_db
        self.collector_token = collector_token
        self.info = info if info is not None else {}
        self.collector: Optional[Collector] = None
        self.server = None
        self._page: Optional[bytes] = None

    # -- component ----------------------------------------------------------------------------
    def start(self, server) -> "Dashboard":
        self.server = server
        if self.push.rest is None:
            raise RuntimeError("the Dashboard must be added after a started PushService")
        self._page = load_page()
        if self.collector_db is None:
            self.collector_db = os.path.join(server.state_dir, "readings.db")
        self.collector = Collector(CollectorStore(self.collector_db))
        rest = self.push.rest
        rest.add_route(r"/", self._root, auth=False)
        rest.add_route(r"/dashboard(?:\.html)?", self._page_route, auth=False)
        rest.add_route(r"/collector/(?:readings|devices)", self._collector_route, auth=False)
        rest.add_route(r"/server/status", self._status)
        rest.add_route(r"/server/request-log", self._request_log)
        rest.add_route(r"/user/([^/]+)/device", self._devices)
        rest.add_route(r"/user/([^/]+)/device/([^/]+)", self._device)
        log.info("dashboard on %s", self.url)
        return self

    def stop(self) -> None:
        self.server = None

    @property
    def url(self) -> str:
        return self.push.rest.url + "/dashboard"

    @property
    def collector_url(self) -> str:
        return self.push.rest.url + "/collector/readings"

    # -- helpers ------------------------------------------------------------------------------
    @staticmethod
    async def _off_loop(fn, *args):
        """SQLite work runs on a worker thread, not on the proxy's event loop."""
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    @staticmethod
    def _get_only(verb: str) -> None:
        if verb != "GET":
            raise HttpError(405, "use GET")

    def _push_state(self, code: str) -> dict:
        """Push reachability as the proxy sees it (call on the proxy's loop)."""
        proxy = self.push.proxy
        d = proxy.devices.get(code) if proxy is not None else None
        if d is None:
            return {"reachable": False, "tunnels": 0, "simpleEndpoint": None, "confirmations": 0}
        return {"reachable": bool(d.reachable),
                "tunnels": sum(1 for t in d.tunnels if t.confirmed and not t.closed),
                "simpleEndpoint": d.endpoint, "confirmations": d.confirmations}

    def _heartbeat_state(self, code: str, heard: dict, packets: int = 0) -> Optional[dict]:
        """``heard``: the receiver's ``devices()`` by distribution id."""
        seen = heard.get(code)
        if seen is None:
            return None
        out = {"packets": seen["packets"], "last": seen["last"],
               "metrics": self.heartbeat.latest_metrics(code)}
        if packets:
            out["recent"] = self.heartbeat.packets(code, packets)
        return out

    def _heard(self) -> dict:
        if self.heartbeat is None:
            return {}
        return {d["distribution_id"]: d for d in self.heartbeat.devices()}

    def _readings_state(self, meter: str, recent: int = 0) -> Optional[dict]:
        store = self.collector.store
        rows = store._conn().execute("SELECT COUNT(*), MAX(ts), MAX(received) FROM "
                                     "collector_readings WHERE device=?", (meter,)).fetchone()
        if not rows[0]:
            return None
        out = {"meter": meter, "count": rows[0], "lastTs": rows[1], "lastReceived": rows[2],
               "latest": store.latest(meter)}
        if recent:
            out["recent"] = store.recent(meter, recent)
        return out

    def _meters(self) -> dict[str, str]:
        """Collector device id -> the same id upper-cased (to match distribution ids)."""
        return {m["device"]: m["device"].upper() for m in self.collector.store.devices()}

    def _device_doc(self, dev, meters: dict[str, str], heard: dict, detail: bool) -> dict:
        db = self.server.db
        code = dev["distribution_id"]
        last = db.query(_LOG_SQL + " WHERE distribution_id=? ORDER BY id DESC LIMIT 1", (code,))
        n = db.query("SELECT COUNT(*) AS n FROM request_log WHERE distribution_id=?", (code,))
        meter = next((m for m, up in meters.items() if up == code), None)
        doc = {"code": code, "description": dev["description"], "registered": dev["created"],
               "requestCount": n[0]["n"], "lastRequest": _request_row(last[0]) if last else None,
               "heartbeatServers": [{k: h[k] for k in ("host", "port", "interval") if k in h}
                                    for h in self.server.heartbeat_entries(code)],
               "heartbeat": self._heartbeat_state(code, heard, 10 if detail else 0),
               "readings": self._readings_state(meter, 50 if detail else 0) if meter else None}
        if detail:
            doc["requests"] = [_request_row(r) for r in db.query(
                _LOG_SQL + " WHERE distribution_id=? ORDER BY id DESC LIMIT 50", (code,))]
        return doc

    def _devices_doc(self) -> dict:
        meters, heard = self._meters(), self._heard()
        devices = [self._device_doc(d, meters, heard, False) for d in self.server.db.devices()]
        known = {d["code"] for d in devices}
        others = [self._readings_state(m) for m, up in sorted(meters.items()) if up not in known]
        return {"devices": devices, "meters": [m for m in others if m], "time": time.time()}

    # -- routes -------------------------------------------------------------------------------
    async def _root(self, verb, m, query, headers, body):
        return 302, Body("text/plain", b"see /dashboard\n", (("Location", "/dashboard"),))

    async def _page_route(self, verb, m, query, headers, body):
        self._get_only(verb)
        return 200, Body("text/html; charset=utf-8", self._page, PAGE_HEADERS)

    async def _collector_route(self, verb, m, query, headers, body):
        auth = headers.get("authorization", "")
        given = auth[7:].strip().encode() if auth.startswith("Bearer ") else b""
        tokens = [t for t in (self.push.rest.token, self.collector_token) if t]
        if not any(hmac.compare_digest(given, t.encode()) for t in tokens):
            raise HttpError(401, "missing or wrong bearer token")
        status, _ctype, data = await self._off_loop(self.collector.handle, verb, m.group(0),
                                                    _raw_query(query), headers, body)
        return status, Body("application/json", data)

    async def _status(self, verb, m, query, headers, body):
        self._get_only(verb)
        rx = self.heartbeat

        def work():
            meters = self.collector.store.devices()
            return {"urls": self.info, "devices": len(self.server.db.devices()),
                    "heartbeat": None if rx is None else {
                        "address": f"{rx.host}:{rx.port}", "counters": dict(rx.counters)},
                    "collector": {"url": self.collector_url, "meters": meters},
                    "push": {"methods": list(self.push.methods)}, "time": time.time()}
        return 200, await self._off_loop(work)

    async def _request_log(self, verb, m, query, headers, body):
        self._get_only(verb)
        limit = _limit(query, 100, 1000)
        code = query.get("code", [None])[0]

        def work():
            if code:
                rows = self.server.db.query(_LOG_SQL + " WHERE distribution_id=? ORDER BY id DESC "
                                            "LIMIT ?", (code.upper(), limit))
            else:
                rows = self.server.db.query(_LOG_SQL + " ORDER BY id DESC LIMIT ?", (limit,))
            return {"requests": [_request_row(r) for r in rows]}
        return 200, await self._off_loop(work)

    async def _devices(self, verb, m, query, headers, body):
        self._get_only(verb)
        doc = await self._off_loop(self._devices_doc)
        for d in doc["devices"]:
            d["push"] = self._push_state(d["code"])
        return 200, doc

    async def _device(self, verb, m, query, headers, body):
        self._get_only(verb)
        user, code = unquote(m.group(1)), unquote(m.group(2)).upper()

        def work():
            dev = self.server.db.device(code)
            if dev is None:
                return None
            doc = self._device_doc(dev, self._meters(), self._heard(), True)
            doc["pushRequests"] = self.push.store.recent(user, code, 50)
            return doc
        doc = await self._off_loop(work)
        if doc is None:
            raise HttpError(404, f"no device {code}")
        doc["push"] = self._push_state(code)
        return 200, doc


def _raw_query(query: dict) -> str:
    return urlencode([(k, v) for k, vs in query.items() for v in vs])


__all__ = ["Dashboard", "load_page"]
