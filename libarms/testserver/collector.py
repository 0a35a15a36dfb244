"""Meter-reading collector for the test server: readings per device in SQLite, idempotent on the key.

Self-contained so the test server can mount it however it serves HTTP:

* :class:`CollectorStore` — the SQLite table (WAL, synchronous=FULL) and its queries;
* :meth:`Collector.handle` — a pure request -> response function
  ``(method, path, query, headers, body) -> (status, content_type, body)``;
* :class:`CollectorServer` — a small threaded HTTP server around it (used by the bridge's tests
  and usable stand-alone: ``python -m libarms.testserver.collector --db r.db --port 8090``);
* :class:`CollectorComponent` — the same as a test-server plug-in
  (``TestServer.add_component(CollectorComponent())``, then ``.url``).

API (JSON)::

    POST /collector/readings      {"device": "...", "readings": [{"key", "kind", "ts", "value",
                                   "source"}, ...]}      -> 200 {"stored": n, "duplicates": m}
    GET  /collector/readings?device=ID[&kind=K][&limit=N] -> 200 {"readings": [...]}
    GET  /collector/devices                               -> 200 {"devices": [{"device", "count",
                                                                   "last_ts"}]}

A reading whose key the device already sent is counted as a duplicate and not stored again, so
the bridge may resend a batch after a crash. Bodies over ``MAX_BODY`` bytes get 413; malformed
JSON or fields get 400 with a message; an optional bearer token guards POST.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional
from urllib.parse import parse_qs, urlsplit

MAX_BODY = 4 * 1024 * 1024
MAX_READINGS = 5000
PREFIX = "/collector"

SCHEMA = """
CREATE TABLE IF NOT EXISTS collector_readings (
    device TEXT NOT NULL,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    ts TEXT NOT NULL,
    value TEXT,
    source TEXT,
    received REAL NOT NULL,
    PRIMARY KEY (device, key)
);
CREATE INDEX IF NOT EXISTS collector_by_kind ON collector_readings(device, kind, ts);
"""


class BadRequest(ValueError):
    pass


class CollectorStore:
    def __init__(self, path: str):
        self.path = path
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conn().executescript(SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            self._local.conn = conn
        return conn

    def add(self, device: str, readings: list[dict]) -> tuple[int, int]:
        conn = self._conn()
        now = time.time()
        stored = 0
        with self._lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for r in readings:
                    cur = conn.execute(
                        "INSERT OR IGNORE INTO collector_readings"
                        "(device, key, kind, ts, value, source, received) VALUES (?,?,?,?,?,?,?)",
                        (device, r["key"], r["kind"], r["ts"], json.dumps(r.get("value")),
                         r.get("source"), now))
                    stored += cur.rowcount
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return stored, len(readings) - stored

    def readings(self, device: str, kind: Optional[str] = None, limit: int = 10000) -> list[dict]:
        sql = "SELECT key, kind, ts, value, source FROM collector_readings WHERE device=?"
        args: list = [device]
        if kind:
            sql += " AND kind=?"
            args.append(kind)
        sql += " ORDER BY rowid LIMIT ?"
        args.append(limit)
        return [{"key": k, "kind": kd, "ts": ts, "value": json.loads(v), "source": s}
                for k, kd, ts, v, s in self._conn().execute(sql, args).fetchall()]

    def summary(self, device: str) -> Optional[dict]:
        """``{"count", "last_ts", "last_received"}`` of a device's readings (None: no reading)."""
        n, ts, rc = self._conn().execute(
            "SELECT COUNT(*), MAX(ts), MAX(received) FROM collector_readings WHERE device=?",
            (device,)).fetchone()
        return {"count": n, "last_ts": ts, "last_received": rc} if n else None

    def recent(self, device: str, limit: int = 50) -> list[dict]:
        """The last ``limit`` readings of a device to arrive, newest first."""
        rows = self._conn().execute(
            "SELECT key, kind, ts, value, source, received FROM collector_readings WHERE device=? "
            "ORDER BY rowid DESC LIMIT ?", (device, limit)).fetchall()
        return [{"key": k, "kind": kd, "ts": ts, "value": json.loads(v), "source": s,
                 "received": rc} for k, kd, ts, v, s, rc in rows]

    def latest(self, device: str) -> dict[str, dict]:
        """``{kind: reading}``: the reading with the greatest ``ts`` of every kind of a device."""
        rows = self._conn().execute(
            "SELECT kind, key, MAX(ts), value, source FROM collector_readings WHERE device=? "
            "GROUP BY kind ORDER BY kind", (device,)).fetchall()
        return {kd: {"key": k, "kind": kd, "ts": ts, "value": json.loads(v), "source": s}
                for kd, k, ts, v, s in rows}

    def devices(self) -> list[dict]:
        rows = self._conn().execute(
            "SELECT device, COUNT(*), MAX(ts) FROM collector_readings GROUP BY device").fetchall()
        return [{"device": d, "count": c, "last_ts": t} for d, c, t in rows]


def _validate(body: bytes) -> tuple[str, list[dict]]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BadRequest("body must be a JSON object")
    device = doc.get("device")
    readings = doc.get("readings")
    if not isinstance(device, str) or not 1 <= len(device) <= 128:
        raise BadRequest("'device' must be a string of 1..128 characters")
    if not isinstance(readings, list) or len(readings) > MAX_READINGS:
        raise BadRequest(f"'readings' must be a list of at most {MAX_READINGS} items")
    for i, r in enumerate(readings):
        if not isinstance(r, dict):
            raise BadRequest(f"reading {i} is not an object")
        for field in ("key", "kind", "ts"):
            if not isinstance(r.get(field), str) or not 1 <= len(r[field]) <= 256:
                raise BadRequest(f"reading {i}: '{field}' must be a string of 1..256 characters")
    return device, readings


class Collector:
    def __init__(self, store: CollectorStore, token: Optional[str] = None, prefix: str = PREFIX):
        self.store = store
        self.token = token
        self.prefix = prefix.rstrip("/")
        #: Test hook: called after a POST was committed and before the answer is sent.
        self.after_commit = None

    def handle(self, method: str, path: str, query: str, headers, body: bytes):
        """-> (status, content_type, body bytes)."""
        try:
            if path == f"{self.prefix}/readings" and method == "POST":
                if self.token and headers.get("Authorization", "") != f"Bearer {self.token}":
                    return self._json(401, {"error": "missing or wrong bearer token"})
                if len(body) > MAX_BODY:
                    return self._json(413, {"error": f"body larger than {MAX_BODY} bytes"})
                device, readings = _validate(body)
                stored, dup = self.store.add(device, readings)
                if self.after_commit is not None:
                    self.after_commit(device, readings)
                return self._json(200, {"stored": stored, "duplicates": dup})
            if path == f"{self.prefix}/readings" and method == "GET":
                q = parse_qs(query)
                device = q.get("device", [""])[0]
                if not device:
                    raise BadRequest("query parameter 'device' is required")
                limit = int(q.get("limit", ["10000"])[0])
                return self._json(200, {"readings": self.store.readings(
                    device, q.get("kind", [None])[0], max(1, min(limit, 100000)))})
            if path == f"{self.prefix}/devices" and method == "GET":
                return self._json(200, {"devices": self.store.devices()})
            return self._json(404, {"error": f"no such resource: {method} {path}"})
        except BadRequest as exc:
            return self._json(400, {"error": str(exc)})
        except ValueError as exc:
            return self._json(400, {"error": str(exc)})

    @staticmethod
    def _json(status: int, doc) -> tuple[int, str, bytes]:
        return status, "application/json", json.dumps(doc).encode()


def make_handler(collector: Collector):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                status, ctype, body = collector._json(413, {"error": "body too large"})
                self.close_connection = True
                # read what the client sends (up to a bound) before answering: closing on an
                # unread body resets the connection and the client never sees the 413
                left = min(length, 16 * MAX_BODY)
                while left > 0:
                    chunk = self.rfile.read(min(left, 65536))
                    if not chunk:
                        break
                    left -= len(chunk)
            else:
                data = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                status, ctype, body = collector.handle(method, parts.path, parts.query,
                                                       self.headers, data)
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            if self.close_connection:
                # say so: a client would otherwise reuse the connection we are closing
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            self._serve("GET")

        def do_POST(self):
            self._serve("POST")

        def log_message(self, fmt, *args):
            pass

    return Handler


class CollectorServer:
    """A threaded HTTP server for the collector on ``host:port`` (port 0 = pick a free one)."""

    def __init__(self, db_path: str, host: str = "127.0.0.1", port: int = 0,
                 token: Optional[str] = None):
        self.collector = Collector(CollectorStore(db_path), token)
        self.httpd = ThreadingHTTPServer((host, port), make_handler(self.collector))
        self.httpd.daemon_threads = True
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}{self.collector.prefix}/readings"

    def start(self) -> "CollectorServer":
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                        name="collector", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread:
            self._thread.join(5)


class CollectorComponent:
    """Test-server plug-in: ``server.add_component(CollectorComponent())``.

    Serves the collector over plain HTTP on ``host:port`` (0 = a free port) with its SQLite file
    in the test server's state directory; ``url`` is what a bridge's ``[upload] url`` takes.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, token: Optional[str] = None,
                 filename: str = "collector.sqlite"):
        self.host, self.port, self.token, self.filename = host, port, token, filename
        self.server: Optional[CollectorServer] = None

    def start(self, testserver) -> None:
        import os
        path = os.path.join(testserver.state_dir, self.filename)
        self.server = CollectorServer(path, self.host, self.port, self.token).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    @property
    def url(self) -> str:
        if self.server is None:
            raise RuntimeError("collector component not started")
        return self.server.url

    @property
    def store(self) -> CollectorStore:
        if self.server is None:
            raise RuntimeError("collector component not started")
        return self.server.collector.store


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="stand-alone meter-reading collector")
    ap.add_argument("--db", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8090)
    ap.add_argument("--token")
    args = ap.parse_args(argv)
    server = CollectorServer(args.db, args.host, args.port, args.token)
    print(f"collector on {server.url}", flush=True)
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
