"""UDP heartbeat receiver for the test server (``arms-agent.md`` 1.3-1.4, W App. A).

One thread reads datagrams from a UDP socket. Each one is checked in this order and counted
under exactly one name:

* ``short``          fewer than the 44 bytes of the HMAC + distribution id prefix;
* ``malformed``      anything :func:`libarms.protocol.heartbeat.parse_packet` refuses (wrong
                     prefix, a TLV overrunning the datagram, a known item with a wrong length,
                     more than 1024 bytes);
* ``unknown_device`` no passphrase known for the distribution id;
* ``bad_digest``     HMAC-SHA1 does not match any passphrase of the device;
* ``accepted``       stored: one row per datagram (``hb_packet``, items as JSON) and the latest
                     value of every (kind, index) per device (``hb_metric``).

Dropped datagrams are only counted (and logged at debug level); nothing is ever sent back.
Heartbeats that arrive before the device's push confirmation is seen are accepted (W App. A).

Passphrases come from, in this order: ``set_passphrase()`` (table ``hb_passphrase`` in the
receiver's own SQLite file), the ``passphrases`` callable given to the constructor
(``distribution_id -> str | list[str] | None``), and, when the receiver runs as a component of
a :class:`~libarms.testserver.server.TestServer`, the ``heartbeat`` entries of the device's
service config (the ones the RS hands out), preferring those that name this receiver's port.

Use alone::

    rx = HeartbeatReceiver("hb.db", port=16000).start()
    rx.set_passphrase("0001-...-002A", "secret")
    rx.wait_for("0001-...-002A", count=3, timeout=10)
    rx.latest_metrics("0001-...-002A")   # {"cpu_usage/0": {...}, ...}
    rx.stop()

or as a test-server component: ``server.add_component(HeartbeatReceiver(port=16000))``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import threading
import time
from typing import Callable, Iterable, Optional, Union

from libarms._record import asdict
from libarms.errors import ProtocolError
from libarms.protocol import heartbeat as hbp

log = logging.getLogger("libarms.testserver.heartbeat")

#: Read buffer: anything longer than a heartbeat may be is malformed, not truncated.
RECV_SIZE = 2048
COUNTERS = ("received", "accepted", "short", "malformed", "unknown_device", "bad_digest")

_KIND = {
    hbp.CpuUsage: "cpu_usage", hbp.CpuDetailUsage: "cpu_detail_usage",
    hbp.MemUsage: "mem_usage", hbp.DiskUsage: "disk_usage",
    hbp.TrafficCount: "traffic_count", hbp.TrafficRate: "traffic_rate",
    hbp.RadioWave: "radiowave", hbp.UnknownItem: "unknown",
}

SCHEMA = """
CREATE TABLE IF NOT EXISTS hb_passphrase (
    distribution_id TEXT NOT NULL,
    passphrase TEXT NOT NULL,
    PRIMARY KEY (distribution_id, passphrase)
);
CREATE TABLE IF NOT EXISTS hb_packet (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    distribution_id TEXT NOT NULL,
    received REAL NOT NULL,
    peer TEXT NOT NULL,
    size INTEGER NOT NULL,
    items TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS hb_packet_by_device ON hb_packet(distribution_id, id);
CREATE TABLE IF NOT EXISTS hb_metric (
    distribution_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    idx INTEGER NOT NULL,
    value TEXT NOT NULL,
    received REAL NOT NULL,
    PRIMARY KEY (distribution_id, kind, idx)
);
CREATE TABLE IF NOT EXISTS hb_counter (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""

Lookup = Callable[[str], Union[str, Iterable[str], None]]


def item_to_dict(item) -> dict:
    """``{"kind": ..., "index": ..., <fields>}`` for one decoded item (JSON-ready)."""
    d = asdict(item)
    if isinstance(item, hbp.UnknownItem):
        return {"kind": "unknown", "index": item.type, "type": item.type,
                "value": item.value.hex()}
    idx = d.pop("index", None)
    if idx is None:
        idx = d.pop("ifindex")
    return {"kind": _KIND[type(item)], "index": idx, **d}


class HeartbeatReceiver:
    """See the module docstring."""

    def __init__(self, db_path: Optional[str] = None, *, host: str = "127.0.0.1",
                 port: int = 0, passphrases: Optional[Lookup] = None,
                 keep_packets: int = 10000):
        self.db_path = db_path
        self.host = host
        self.want_port = port
        self.lookup = passphrases
        self.keep_packets = keep_packets
        self.counters = {k: 0 for k in COUNTERS}
        self._server = None
        self._sock: Optional[socket.socket] = None
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._cv = threading.Condition()
        self._db: Optional[sqlite3.Connection] = None
        self._db_lock = threading.Lock()
        self._accepted_by_device: dict[str, int] = {}

    # -- lifecycle ------------------------------------------------------------------------
    def start(self, server=None) -> "HeartbeatReceiver":
        """Bind and start the thread. ``server``: the TestServer when used as a component."""
        if self._thread is not None:
            return self
        self._server = server
        if self.db_path is None:
            if server is None:
                raise ValueError("HeartbeatReceiver needs a db_path when used alone")
            self.db_path = os.path.join(server.state_dir, "heartbeats.db")
        self._db = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None,
                                   timeout=10)
        self._db.row_factory = sqlite3.Row
        with self._db_lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            # metrics, not state: a power cut may lose the last datagrams, never corrupt the file
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            for name, value in self._db.execute("SELECT name, value FROM hb_counter"):
                if name in self.counters:
                    self.counters[name] = value
        fam = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(fam, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((self.host, self.want_port))
        sock.settimeout(0.2)
        self._sock = sock
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="testserver-heartbeat",
                                        daemon=True)
        self._thread.start()
        log.info("heartbeat receiver on udp %s:%d, store %s", self.host, self.port, self.db_path)
        return self

    def stop(self) -> None:
        th = self._thread
        if th is None:
            return
        self._stop.set()
        th.join(timeout=5)
        self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        with self._db_lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def port(self) -> int:
        return self._sock.getsockname()[1] if self._sock else self.want_port

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    # -- passphrases ----------------------------------------------------------------------
    def set_passphrase(self, distribution_id: str, passphrase: str) -> None:
        """Register one more passphrase for a device (kept in the receiver's SQLite file)."""
        with self._db_lock:
            self._db.execute("INSERT OR IGNORE INTO hb_passphrase VALUES(?, ?)",
                             (distribution_id.upper(), passphrase))

    def _passphrases(self, dist: str) -> list[str]:
        with self._db_lock:
            rows = self._db.execute("SELECT passphrase FROM hb_passphrase WHERE "
                                    "distribution_id=?", (dist,)).fetchall()
        found = [r[0] for r in rows]
        if self.lookup is not None:
            got = self.lookup(dist)
            if isinstance(got, (str, bytes)):
                found.append(got)
            elif got:
                found.extend(got)
        if not found and self._server is not None and getattr(self._server, "db", None):
            db = self._server.db
            if db.device(dist) is not None:
                entries = db.service(dist).get("heartbeat") or []
                mine = [h["passphrase"] for h in entries if int(h.get("port", -1)) == self.port]
                found = mine or [h["passphrase"] for h in entries]
        return found

    # -- receiving ------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self._sock.recvfrom(RECV_SIZE)
            except socket.timeout:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                raise
            try:
                self.handle(data, peer)
            except Exception:  # a bug here must not kill the receiver
                log.exception("heartbeat from %s not handled", peer)

    def handle(self, data: bytes, peer=("", 0)) -> str:
        """Check, count and store one datagram; returns the counter it was counted under."""
        outcome, dist, packet = self._classify(data)
        now = time.time()
        with self._db_lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                for name in ("received", outcome):
                    db.execute("INSERT INTO hb_counter(name, value) VALUES(?, 1) ON CONFLICT(name) "
                               "DO UPDATE SET value = value + 1", (name,))
                if outcome == "accepted":
                    items = [item_to_dict(i) for i in packet.items]
                    cur = db.execute("INSERT INTO hb_packet(distribution_id, received, peer, size, "
                                     "items) VALUES(?,?,?,?,?)",
                                     (dist, now, f"{peer[0]}:{peer[1]}", len(data),
                                      json.dumps(items)))
                    for it in items:
                        db.execute("INSERT INTO hb_metric VALUES(?,?,?,?,?) ON CONFLICT"
                                   "(distribution_id, kind, idx) DO UPDATE SET value=excluded.value,"
                                   " received=excluded.received",
                                   (dist, it["kind"], it["index"], json.dumps(it), now))
                    if self.keep_packets and cur.lastrowid % 100 == 0:
                        db.execute("DELETE FROM hb_packet WHERE distribution_id=? AND id <= ?",
                                   (dist, cur.lastrowid - self.keep_packets))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        with self._cv:
            self.counters["received"] += 1
            self.counters[outcome] += 1
            if outcome == "accepted":
                self._accepted_by_device[dist] = self._accepted_by_device.get(dist, 0) + 1
            self._cv.notify_all()
        if outcome != "accepted":
            log.debug("heartbeat from %s:%s dropped: %s", peer[0], peer[1], outcome)
        return outcome

    def _classify(self, data: bytes):
        if len(data) < hbp.PREFIX_LEN:
            return "short", None, None
        try:
            packet = hbp.parse_packet(data)
        except ProtocolError:
            return "malformed", None, None
        dist = str(packet.distribution_id)
        keys = self._passphrases(dist)
        if not keys:
            return "unknown_device", dist, None
        if not any(hbp.verify_packet(data, k) for k in keys):
            return "bad_digest", dist, None
        return "accepted", dist, packet

    # -- queries --------------------------------------------------------------------------
    def wait_for(self, distribution_id: Optional[str] = None, count: int = 1,
                 timeout: float = 10.0) -> bool:
        """Block (at most ``timeout`` s) until ``count`` datagrams were accepted in total, or
        from ``distribution_id`` since this receiver started."""
        end = time.monotonic() + timeout
        dist = distribution_id.upper() if distribution_id else None

        def n():
            if dist is None:
                return sum(self._accepted_by_device.values())
            return self._accepted_by_device.get(dist, 0)
        with self._cv:
            while n() < count:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
            return True

    def packets(self, distribution_id: str, limit: int = 100) -> list[dict]:
        """The latest accepted datagrams of a device, newest first."""
        with self._db_lock:
            rows = self._db.execute("SELECT received, peer, size, items FROM hb_packet WHERE "
                                    "distribution_id=? ORDER BY id DESC LIMIT ?",
                                    (distribution_id.upper(), limit)).fetchall()
        return [{"received": r["received"], "peer": r["peer"], "size": r["size"],
                 "items": json.loads(r["items"])} for r in rows]

    def latest_metrics(self, distribution_id: str) -> dict[str, dict]:
        """``{"<kind>/<index>": item dict}``: the last value of every item a device sent."""
        with self._db_lock:
            rows = self._db.execute("SELECT kind, idx, value FROM hb_metric WHERE "
                                    "distribution_id=? ORDER BY kind, idx",
                                    (distribution_id.upper(),)).fetchall()
        return {f"{r['kind']}/{r['idx']}": json.loads(r["value"]) for r in rows}

    def devices(self) -> list[dict]:
        """Devices heard from: count of stored datagrams and the last arrival."""
        with self._db_lock:
            rows = self._db.execute("SELECT distribution_id, COUNT(*) AS n, MAX(received) AS last "
                                    "FROM hb_packet GROUP BY distribution_id").fetchall()
        return [{"distribution_id": r[0], "packets": r[1], "last": r[2]} for r in rows]


__all__ = ["HeartbeatReceiver", "item_to_dict", "COUNTERS"]
