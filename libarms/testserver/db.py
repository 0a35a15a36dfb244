"""The test server's state in SQLite: devices, their location and service configs, SA
credentials, every request served, and a small key/value table for components.

One connection shared by the server threads behind a lock (SQLite in WAL mode); every write is a
transaction. Configs are JSON documents merged key by key (``set_location`` / ``set_service``),
with the defaults below filled in on read, so a component added later can keep its own keys in
the same documents. Other components add tables with :meth:`Database.execute_script`.

Location document (what the LS answers, per device)::

    {"rs_key": str, "rs_urls": [str] | null (null: this server's RS),
     "lines": [line] | null (null: one line of the first RS URL's family: DHCP for IPv4, RA for
              IPv6; a device skips RS URLs its line cannot reach),
     "ll_timeout": 30, "rs_retry_max": 1, "rs_retry_interval": 2, "lifetime": 0,
     "result": null | int (force a result code)}
    line = {"type": "dhcp"|"pppoe"|"pppoe-ipv6"|"mobile"|"static"|"ra", "ifindex": 0,
            "account": "", "password": "", ...}

Service document (what the RS answers)::

    {"modules": [{"id": int, "version": str, "info": str, "config": str | null,
                  "config_b64": str | null}],
     "heartbeat": [{"host": str, "port": int, "passphrase": str, "interval": int}] | null
                   (null: the server's default, see TestServer.default_heartbeat; []: none),
     "rs_pull_urls": [str] | null,
     "push_addresses": [str] | null (null: this server's address as the device reached it),
     "push_port": 10443,
     "push_timeout": 60, "result": null | int}
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from typing import Any, Optional

SCHEMA = """
CREATE TABLE IF NOT EXISTS device (
    distribution_id TEXT PRIMARY KEY,      -- upper case, as on the wire
    ls_sa_key TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS location_config (
    distribution_id TEXT PRIMARY KEY REFERENCES device(distribution_id) ON DELETE CASCADE,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS service_config (
    distribution_id TEXT PRIMARY KEY REFERENCES device(distribution_id) ON DELETE CASCADE,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sa_credential (
    distribution_id TEXT PRIMARY KEY REFERENCES device(distribution_id) ON DELETE CASCADE,
    cert_pem TEXT NOT NULL,
    key_pem TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS request_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    role TEXT NOT NULL,                    -- ls / rs / a component's name
    path TEXT NOT NULL,
    peer TEXT NOT NULL,
    distribution_id TEXT,
    type TEXT,                             -- ARMS message type
    trig TEXT,                             -- trigger of pull requests
    http_status INTEGER,
    result_code INTEGER,
    body BLOB
);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

LOCATION_DEFAULTS = {"rs_key": None, "rs_urls": None, "lines": None,
                     "ll_timeout": 30, "rs_retry_max": 1, "rs_retry_interval": 2, "lifetime": 0,
                     "result": None}
SERVICE_DEFAULTS = {"modules": [], "heartbeat": None, "rs_pull_urls": None,
                    "push_addresses": None, "push_port": 10443, "push_timeout": 60,
                    "result": None}


class UnknownDevice(KeyError):
    pass


class Database:
    def __init__(self, path: str):
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")   # WAL: durable enough for a test server
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- generic --------------------------------------------------------------------------
    def execute_script(self, sql: str) -> None:
        """Let a component add its own tables (``CREATE TABLE IF NOT EXISTS ...``)."""
        with self._lock:
            self._db.executescript(sql)

    def query(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._db.execute(sql, args))

    def execute(self, sql: str, args: tuple = ()) -> int:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(sql, args)
                self._db.execute("COMMIT")
                return cur.lastrowid
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def kv_get(self, key: str, default: Optional[str] = None) -> Optional[str]:
        rows = self.query("SELECT value FROM kv WHERE key=?", (key,))
        return rows[0]["value"] if rows else default

    def kv_set(self, key: str, value: str) -> None:
        self.execute("INSERT INTO kv(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                     (key, value))

    # -- devices --------------------------------------------------------------------------
    def add_device(self, distribution_id: str, ls_sa_key: str, *, rs_key: Optional[str] = None,
                   description: str = "") -> None:
        d = distribution_id.upper()
        with self._lock:
            self.execute("INSERT INTO device(distribution_id, ls_sa_key, description, created) VALUES(?,?,?,?) "
                         "ON CONFLICT(distribution_id) DO UPDATE SET ls_sa_key=excluded.ls_sa_key, "
                         "description=excluded.description", (d, ls_sa_key, description, time.time()))
            loc = self._doc("location_config", d)
            if rs_key or not loc.get("rs_key"):
                loc["rs_key"] = rs_key or loc.get("rs_key") or "rs-" + secrets.token_hex(12)
                self._put("location_config", d, loc)

    def device(self, distribution_id: str) -> Optional[sqlite3.Row]:
        rows = self.query("SELECT * FROM device WHERE distribution_id=?", (distribution_id.upper(),))
        return rows[0] if rows else None

    def devices(self) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM device ORDER BY created")

    def _doc(self, table: str, d: str) -> dict:
        rows = self.query(f"SELECT doc FROM {table} WHERE distribution_id=?", (d,))
        return json.loads(rows[0]["doc"]) if rows else {}

    def _put(self, table: str, d: str, doc: dict) -> None:
        self.execute(f"INSERT INTO {table}(distribution_id, doc) VALUES(?, ?) ON CONFLICT(distribution_id) "
                     "DO UPDATE SET doc=excluded.doc", (d, json.dumps(doc, sort_keys=True)))

    def _merge(self, table: str, distribution_id: str, changes: dict) -> dict:
        d = distribution_id.upper()
        with self._lock:
            if self.device(d) is None:
                raise UnknownDevice(f"no device {d}: add it first")
            doc = self._doc(table, d)
            doc.update(changes)
            self._put(table, d, doc)
            return doc

    def set_location(self, distribution_id: str, **changes: Any) -> dict:
        return self._merge("location_config", distribution_id, changes)

    def set_service(self, distribution_id: str, **changes: Any) -> dict:
        return self._merge("service_config", distribution_id, changes)

    def location(self, distribution_id: str) -> dict:
        return {**LOCATION_DEFAULTS, **self._doc("location_config", distribution_id.upper())}

    def service(self, distribution_id: str) -> dict:
        return {**SERVICE_DEFAULTS, **self._doc("service_config", distribution_id.upper())}

    # -- SA credentials -------------------------------------------------------------------
    def sa_credential(self, distribution_id: str) -> Optional[tuple[str, str]]:
        rows = self.query("SELECT cert_pem, key_pem FROM sa_credential WHERE distribution_id=?",
                          (distribution_id.upper(),))
        return (rows[0]["cert_pem"], rows[0]["key_pem"]) if rows else None

    def set_sa_credential(self, distribution_id: str, cert_pem: str, key_pem: str) -> None:
        self.execute("INSERT OR REPLACE INTO sa_credential VALUES(?,?,?)",
                     (distribution_id.upper(), cert_pem, key_pem))

    # -- request log ----------------------------------------------------------------------
    def log_request(self, *, role: str, path: str, peer: str, distribution_id: Optional[str],
                    type: Optional[str], trig: Optional[str], http_status: int,
                    result_code: Optional[int], body: bytes) -> int:
        return self.execute(
            "INSERT INTO request_log(ts, role, path, peer, distribution_id, type, trig, http_status, "
            "result_code, body) VALUES(?,?,?,?,?,?,?,?,?,?)",
            (time.time(), role, path, peer, distribution_id, type, trig, http_status, result_code, body))

    def requests(self, distribution_id: Optional[str] = None, type: Optional[str] = None) -> list[sqlite3.Row]:
        sql, args = "SELECT * FROM request_log WHERE 1=1", []
        if distribution_id:
            sql += " AND distribution_id=?"
            args.append(distribution_id.upper())
        if type:
            sql += " AND type=?"
            args.append(type)
        return self.query(sql + " ORDER BY id", tuple(args))
