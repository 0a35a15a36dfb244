"""REST API of the test server, shaped after SACM's (spec W App. F, the ``msh`` client).

Endpoints (loopback, ``Authorization: Bearer <token>``, JSON):

``POST /user/{user}/request/{method}``
    Start a push. Body: ``{"code": "<distribution id>", ...parameters}``; md-command takes
    ``"module"`` and ``"command"`` (or msh's ``"commands": {"1/plain": "show status"}``),
    read-status/clear-status ``"modules"`` (+ ``"parameter"``), read-storage ``"storage"``,
    ping ``"address"``, ``"count"`` (5), ``"size"`` (56), traceroute ``"address"``,
    ``"count"`` (3), ``"maxhop"`` (30), pull-config ``"pullType"`` (LS/RS), configure
    ``"modules"`` and ``"configs"``. Answer 201 ``{"id": N, "status": "pending"}``.
``GET /user/{user}/request/{method}/{id}[?wait=S]``
    The request and, once finished, its result (``status`` pending/running/done/error,
    ``resultCode``, ``results`` per module, ``error``). ``wait`` long-polls up to S seconds
    (at most 60) for the request to finish.
``GET /user/{user}/request/{method}/{id}/result/module/{module}/plain``
    That module's raw result bytes.
``GET /user/{user}/request/{method}[?code=DISTID]``
    The user's requests of that method (for one device), newest first (at most 100).
``GET /user/{user}/request[?limit=N]``
    The user's requests of every method, newest first (at most 500).

Other parts of the test server mount more resources with :meth:`RestApi.add_route` (the
dashboard and its read-only views, the readings collector); see ``dashboard.py``.

Requests and results live in SQLite (written before the push starts, updated when it ends).
Every request ends with a result or an error: a push that fails says why, a request still
pending when the server stops is closed as an error, and on start any request a crashed
server left pending or running is closed as an error ("server restarted").
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import re
import sqlite3
import threading
import time
import urllib.parse
from typing import Awaitable, Callable, NamedTuple, Optional

from ..protocol import push as P
from .proxy import PushFailed, PushProxy, build_body

log = logging.getLogger("libarms.testserver.rest")

SCHEMA = """
CREATE TABLE IF NOT EXISTS push_request (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_code TEXT NOT NULL,
    device TEXT NOT NULL,
    method TEXT NOT NULL,
    params TEXT NOT NULL,
    status TEXT NOT NULL,
    result_code INTEGER,
    response TEXT,
    error TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS push_request_user ON push_request (user_code, method, id);
"""

MAX_REQUEST = 1024 * 1024
MAX_WAIT = 60.0


class RequestStore:
    """Push requests and their results in SQLite (thread-safe). WAL with synchronous=NORMAL:
    a committed request survives a crash of the server process (the test server's promise);
    only a power loss may drop the last commits."""

    def __init__(self, path: str):
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _exec(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, args)

    def create(self, user: str, device: str, method: str, params: dict) -> int:
        now = time.time()
        cur = self._exec("INSERT INTO push_request (user_code, device, method, params, status, "
                         "created, updated) VALUES (?, ?, ?, ?, 'pending', ?, ?)",
                         (user, device, method, json.dumps(params), now, now))
        return int(cur.lastrowid)

    def running(self, rid: int) -> None:
        self._exec("UPDATE push_request SET status='running', updated=? WHERE id=? AND status='pending'",
                   (time.time(), rid))

    def finish(self, rid: int, result_code: int, response: dict) -> None:
        self._exec("UPDATE push_request SET status='done', result_code=?, response=?, updated=? "
                   "WHERE id=? AND status IN ('pending','running')",
                   (result_code, json.dumps(response), time.time(), rid))

    def fail(self, rid: int, error: str) -> None:
        self._exec("UPDATE push_request SET status='error', error=?, updated=? "
                   "WHERE id=? AND status IN ('pending','running')", (error, time.time(), rid))

    def close_unfinished(self, error: str) -> int:
        cur = self._exec("UPDATE push_request SET status='error', error=?, updated=? "
                         "WHERE status IN ('pending','running')", (error, time.time()))
        return cur.rowcount

    def get(self, rid: int) -> Optional[dict]:
        rows = self._exec("SELECT * FROM push_request WHERE id=?", (rid,)).fetchall()
        return _doc(rows[0]) if rows else None

    def list(self, user: str, method: str, limit: int = 100) -> list[dict]:
        rows = self._exec("SELECT * FROM push_request WHERE user_code=? AND method=? "
                          "ORDER BY id DESC LIMIT ?", (user, method, limit)).fetchall()
        return [_doc(r) for r in rows]

    def recent(self, user: Optional[str] = None, device: Optional[str] = None,
               limit: int = 100) -> list[dict]:
        """Requests of every method, newest first, optionally of one user and/or device."""
        sql, args = "SELECT * FROM push_request WHERE 1=1", []
        if user is not None:
            sql += " AND user_code=?"
            args.append(user)
        if device is not None:
            sql += " AND device=?"
            args.append(device.upper())
        rows = self._exec(sql + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [_doc(r) for r in rows]


def _doc(row: sqlite3.Row) -> dict:
    d = {"id": row["id"], "user": row["user_code"], "code": row["device"], "method": row["method"],
         "params": json.loads(row["params"]), "status": row["status"],
         "resultCode": row["result_code"], "error": row["error"],
         "created": row["created"], "updated": row["updated"]}
    if row["response"]:
        d.update(json.loads(row["response"]))
    return d


def outcome_json(out) -> dict:
    """A PushOutcome as stored and served: per-module results, ping/traceroute data, etc."""
    ans = out.done if out.done is not None else out.response
    results = []
    for m in ans.modules:
        if m.binary:
            results.append({"module": m.id, "result": m.result, "encoding": "base64",
                            "data": base64.b64encode(m.data).decode()})
        else:
            results.append({"module": m.id, "result": m.result, "encoding": "plain",
                            "data": m.data.decode("ascii", "replace")})
    d: dict = {"via": out.via, "results": results, "transactionId": out.response.transaction_id}
    if ans.success is not None:
        d["success"], d["failure"] = ans.success, ans.failure
    if ans.hops:
        d["hops"] = [{"hop": h, "address": a} for h, a in ans.hops]
    if ans.module_list:
        d["modules"] = [{"id": m.id, "version": m.version, "info": m.info} for m in ans.module_list]
    if ans.transaction_ids:
        d["transactions"] = list(ans.transaction_ids)
    return d


def params_from_json(method: str, doc: dict) -> dict:
    """REST parameters -> the proxy's ``build_body`` parameters (msh shapes accepted)."""
    p = dict(doc)
    cmds = doc.get("commands")
    if method == "md-command" and isinstance(cmds, dict) and cmds:
        key, text = next(iter(cmds.items()))
        mod, _, kind = str(key).partition("/")
        p["module"], p["command"] = int(mod), text
        p["base64"] = kind == "binary"
    if "maxhop" in doc:
        p["max_hop"] = doc["maxhop"]
    return p


class Body(NamedTuple):
    """A non-JSON answer of a mounted route: content type, bytes, extra header lines."""

    content_type: str
    data: bytes
    headers: tuple = ()


#: ``fn(verb, match, query, headers, body) -> (status, payload)``; payload JSON-able or Body.
Route = Callable[[str, "re.Match", dict, dict, bytes], Awaitable[tuple]]


class HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


_REASONS = {200: "OK", 201: "Created", 302: "Found", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
            405: "Method Not Allowed", 413: "Payload Too Large", 500: "Internal Server Error",
            503: "Service Unavailable"}


def _limit(query: dict, default: int, most: int) -> int:
    try:
        return max(1, min(int(query.get("limit", [default])[0]), most))
    except ValueError:
        raise HttpError(400, "limit must be a number") from None


class RestApi:
    """The REST API on the proxy's asyncio loop."""

    def __init__(self, proxy: PushProxy, store: RequestStore, token: str, *, host: str = "127.0.0.1",
                 port: int = 0, push_timeout: float = 60.0, connect_timeout: float = 30.0,
                 on_done: Optional[Callable[[str, str, dict, int], None]] = None):
        self.proxy = proxy
        #: ``on_done(device, method, params, result_code)`` after a push got its result (the
        #: test server keeps a successful configure as the device's service config).
        self.on_done = on_done
        self.store = store
        self.token = token
        self.host = host
        self.port = port
        self.push_timeout = push_timeout
        self.connect_timeout = connect_timeout
        self.server: Optional[asyncio.base_events.Server] = None
        self._finished: dict[int, asyncio.Event] = {}
        self._tasks: set[asyncio.Task] = set()
        self._routes: list[tuple[re.Pattern, Route, bool]] = []

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def add_route(self, pattern: str, fn: Route, *, auth: bool = True) -> None:
        """Mount ``fn`` on the paths matching the regex ``pattern`` (whole path, query apart).
        With ``auth`` (the default) the bearer token is checked first. Mounted routes are
        tried before the built-in ``/user/...`` resources, in the order added."""
        self._routes.append((re.compile(pattern), fn, auth))

    async def start(self) -> None:
        n = self.store.close_unfinished("server restarted before the device answered")
        if n:
            log.warning("closed %d request(s) left unfinished by a previous server as errors", n)
        self.server = await asyncio.start_server(self._client, self.host, self.port)
        self.port = self.server.sockets[0].getsockname()[1]
        log.info("REST API on %s", self.url)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.store.close_unfinished("server stopped before the device answered")

    # -- HTTP ----------------------------------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for _ in range(100_000):               # keep-alive, bounded
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 120)
                except (asyncio.IncompleteReadError, asyncio.TimeoutError, asyncio.LimitOverrunError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                m = re.fullmatch(r"(GET|POST|PUT|DELETE|HEAD) (\S+) HTTP/1\.([01])", lines[0])
                headers = {}
                for ln in lines[1:]:
                    if ":" in ln:
                        k, v = ln.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                length = int(headers.get("content-length", "0") or 0)
                if length > MAX_REQUEST:
                    writer.write(self._response(413, {"error": "request body too large"}, close=True))
                    return
                body = await reader.readexactly(length) if length else b""
                keep = m is not None and m.group(3) == "1" and headers.get("connection", "").lower() != "close"
                if m is None:
                    writer.write(self._response(400, {"error": "bad request line"}, close=True))
                    return
                try:
                    status, payload = await self._route(m.group(1), m.group(2), headers, body)
                except HttpError as e:
                    status, payload = e.status, {"error": e.message}
                except Exception as e:
                    log.exception("REST request failed")
                    status, payload = 500, {"error": f"{type(e).__name__}: {e}"}
                writer.write(self._response(status, payload, close=not keep))
                await writer.drain()
                if not keep:
                    return
        except (ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            pass        # shutting down; a cancelled connection task upsets asyncio 3.11's streams
        finally:
            writer.close()

    def _response(self, status: int, payload, close: bool) -> bytes:
        extra = ""
        if isinstance(payload, Body):
            body, ctype = payload.data, payload.content_type
            extra = "".join(f"{k}: {v}\r\n" for k, v in payload.headers)
        elif isinstance(payload, bytes):
            body, ctype = payload, "application/octet-stream"
        else:
            body, ctype = json.dumps(payload).encode(), "application/json"
        return (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\n{extra}Cache-Control: no-store\r\n"
                f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n").encode() + body

    def _check_token(self, headers: dict) -> None:
        auth = headers.get("authorization", "")
        if not (auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].strip().encode(),
                                                                   self.token.encode())):
            raise HttpError(401, "missing or wrong bearer token")

    async def _route(self, verb: str, target: str, headers: dict, body: bytes):
        parts = urllib.parse.urlsplit(target)
        query = urllib.parse.parse_qs(parts.query)
        for pattern, fn, auth in self._routes:
            m = pattern.fullmatch(parts.path)
            if m is not None:
                if auth:
                    self._check_token(headers)
                return await fn(verb, m, query, headers, body)
        self._check_token(headers)
        seg = [urllib.parse.unquote(s) for s in parts.path.strip("/").split("/")]
        if len(seg) == 3 and seg[0] == "user" and seg[2] == "request":
            if verb != "GET":
                raise HttpError(405, "use GET")
            return 200, {"requests": self.store.recent(seg[1], limit=_limit(query, 100, 500))}
        if len(seg) < 4 or seg[0] != "user" or seg[2] != "request":
            raise HttpError(404, f"no such resource {parts.path}")
        user, method = seg[1], seg[3]
        if method not in P.PUSH_METHODS:
            raise HttpError(404, f"unknown operation {method!r}")
        if len(seg) == 4:
            if verb == "POST":
                return 201, self._submit(user, method, body)
            if verb == "GET":
                docs = self.store.list(user, method)
                code = query.get("code", [None])[0]
                if code:
                    docs = [d for d in docs if d["code"] == code.upper()]
                return 200, {"requests": docs}
            raise HttpError(405, "use POST or GET")
        try:
            rid = int(seg[4])
        except ValueError:
            raise HttpError(404, "request id must be a number") from None
        if verb != "GET":
            raise HttpError(405, "use GET")
        doc = self.store.get(rid)
        if doc is None or doc["user"] != user or doc["method"] != method:
            raise HttpError(404, f"no request {rid}")
        if len(seg) == 5:
            wait = min(float(query.get("wait", ["0"])[0] or 0), MAX_WAIT)
            if wait > 0 and doc["status"] in ("pending", "running"):
                ev = self._finished.get(rid)
                if ev is not None:
                    try:
                        await asyncio.wait_for(ev.wait(), wait)
                    except asyncio.TimeoutError:
                        pass
                doc = self.store.get(rid)
            return 200, doc
        if len(seg) == 9 and seg[5] == "result" and seg[6] == "module" and seg[8] in ("plain", "binary"):
            for r in doc.get("results") or []:
                if str(r["module"]) == seg[7]:
                    data = base64.b64decode(r["data"]) if r["encoding"] == "base64" else r["data"].encode()
                    return 200, data
            raise HttpError(404, f"no result for module {seg[7]}")
        raise HttpError(404, f"no such resource {parts.path}")

    def _submit(self, user: str, method: str, body: bytes) -> dict:
        try:
            doc = json.loads(body or b"{}")
        except ValueError as e:
            raise HttpError(400, f"body is not JSON: {e}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("code"), str):
            raise HttpError(400, 'body must be a JSON object with "code" (the distribution id)')
        device = doc["code"].upper()
        params = params_from_json(method, doc)
        try:
            xml = build_body(method, params)
        except (KeyError, ValueError, TypeError) as e:
            raise HttpError(400, f"bad parameters for {method}: {e}") from None
        rid = self.store.create(user, device, method, doc)
        self._finished[rid] = asyncio.Event()
        t = asyncio.create_task(self._run(rid, device, method, xml, params))
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return {"id": rid, "status": "pending"}

    async def _run(self, rid: int, device: str, method: str, xml: bytes,
                   params: Optional[dict] = None) -> None:
        try:
            out = await self.proxy.push(device, method, xml, timeout=self.push_timeout,
                                        connect_timeout=self.connect_timeout)
            if self.on_done is not None:
                try:
                    self.on_done(device, method, params or {}, out.result_code)
                except Exception:
                    log.exception("push request %d: keeping its outcome failed", rid)
            self.store.finish(rid, out.result_code, outcome_json(out))
        except PushFailed as e:
            self.store.fail(rid, str(e))
        except asyncio.CancelledError:
            self.store.fail(rid, "server stopped before the device answered")
            raise
        except Exception as e:
            log.exception("push request %d failed", rid)
            self.store.fail(rid, f"{type(e).__name__}: {e}")
        finally:
            ev = self._finished.pop(rid, None)
            if ev is not None:
                ev.set()
