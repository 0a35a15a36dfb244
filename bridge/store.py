"""Durable local queue of readings (SQLite, WAL, synchronous=FULL) and atomic file writes.

Every reading is committed here before anything else happens to it; a commit returns only after
the WAL is fsync'd, so a reading the poller has seen survives SIGKILL and power loss. The
uploader marks rows uploaded only after the collector acknowledged them; the idempotency key
stored with each row makes the re-upload after a crash harmless.

Keys: half-hour values (EA/EB/EC/E2 slots) use the natural key ``device/kind/timestamp``, so a
notification, a poll and a back-fill of the same slot are one reading; instantaneous values get
a random key when they are taken.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import sqlite3
import tempfile
import threading
import time
import uuid
from typing import Optional

SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    device TEXT NOT NULL,
    kind TEXT NOT NULL,
    ts TEXT NOT NULL,
    value TEXT,
    source TEXT NOT NULL,
    created REAL NOT NULL,
    uploaded REAL,
    rejected TEXT
);
CREATE INDEX IF NOT EXISTS readings_pending ON readings(id) WHERE uploaded IS NULL;
CREATE INDEX IF NOT EXISTS readings_kind_ts ON readings(kind, ts);
"""


def atomic_write(path: str, data: bytes, mode: int = 0o644) -> None:
    """Write temp file in the same directory, fsync, rename, fsync the directory."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


@dataclasses.dataclass(frozen=True)
class Reading:
    key: str
    device: str
    kind: str
    ts: str                  # ISO 8601 with offset
    value: object            # JSON-able; None = the meter had no data
    source: str              # poll | notification | backfill | command

    def as_json(self) -> dict:
        return {"key": self.key, "kind": self.kind, "ts": self.ts, "value": self.value,
                "source": self.source}


def instant_reading(device: str, kind: str, value, source: str = "poll",
                    when: Optional[dt.datetime] = None) -> Reading:
    when = when or dt.datetime.now(dt.timezone.utc)
    return Reading(f"{device}/{kind}/{uuid.uuid4().hex}", device, kind,
                   when.isoformat(timespec="milliseconds"), value, source)


def halfhour_reading(device: str, kind: str, when: dt.datetime, value, source: str) -> Reading:
    ts = when.isoformat()
    return Reading(f"{device}/{kind}/{ts}", device, kind, ts, value, source)


class Store:
    """The queue. One instance per thread is fine; each opens its own connection."""

    def __init__(self, path: str):
        self.path = path
        self._local = threading.local()
        self._wake = threading.Condition()
        self._added = 0                   # bumped on every commit that added readings
        with self._conn() as conn:
            conn.executescript(SCHEMA)
            cols = {row[1] for row in conn.execute("PRAGMA table_info(readings)")}
            if "rejected" not in cols:          # a queue written before rejections existed
                conn.execute("ALTER TABLE readings ADD COLUMN rejected TEXT")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            self._local.conn = conn
        return conn

    def add(self, *readings: Reading) -> int:
        """Commit readings (fsync'd); returns how many were new (duplicates by key ignored)."""
        conn = self._conn()
        new = 0
        now = time.time()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for r in readings:
                cur = conn.execute(
                    "INSERT OR IGNORE INTO readings(key, device, kind, ts, value, source, created)"
                    " VALUES (?,?,?,?,?,?,?)",
                    (r.key, r.device, r.kind, r.ts, json.dumps(r.value), r.source, now))
                new += cur.rowcount
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if new:
            with self._wake:
                self._added += 1
                self._wake.notify_all()
        return new

    def added_mark(self) -> int:
        """A mark to pass to ``wait_for_pending``: take it BEFORE looking for pending readings,
        so that readings added in between are not slept through."""
        with self._wake:
            return self._added

    def wait_for_pending(self, timeout: float, since: Optional[int] = None,
                         stop: Optional[threading.Event] = None) -> bool:
        """Wait (at most ``timeout``) until readings were added after mark ``since`` or ``stop``
        is set; returns True if readings were added. Without ``since``: any add from now on."""
        with self._wake:
            mark = self._added if since is None else since
            return self._wake.wait_for(
                lambda: self._added != mark or (stop is not None and stop.is_set()),
                timeout) and self._added != mark

    def wake(self) -> None:
        """Wake waiters of ``wait_for_pending`` (e.g. to let them see their stop event)."""
        with self._wake:
            self._wake.notify_all()

    def pending(self, limit: int = 100) -> list[Reading]:
        rows = self._conn().execute(
            "SELECT key, device, kind, ts, value, source FROM readings WHERE uploaded IS NULL "
            "AND rejected IS NULL ORDER BY id LIMIT ?", (limit,)).fetchall()
        return [Reading(k, d, kind, ts, json.loads(v), s) for k, d, kind, ts, v, s in rows]

    def mark_uploaded(self, keys) -> None:
        conn = self._conn()
        now = time.time()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("UPDATE readings SET uploaded=? WHERE key=?", [(now, k) for k in keys])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def reject(self, key: str, reason: str) -> None:
        """Set a reading aside that the collector refused as malformed: it stays in the queue
        (never deleted, never pruned) but no longer blocks the readings behind it."""
        self._conn().execute("UPDATE readings SET rejected=? WHERE key=? AND uploaded IS NULL",
                             (reason[:500] or "rejected", key))

    def retry_rejected(self) -> int:
        """Make rejected readings pending again (at start: the collector or our configuration
        may have been fixed since); returns how many."""
        return self._conn().execute(
            "UPDATE readings SET rejected=NULL WHERE rejected IS NOT NULL").rowcount

    def last_ts(self, kind: str) -> Optional[str]:
        row = self._conn().execute("SELECT MAX(ts) FROM readings WHERE kind=?", (kind,)).fetchone()
        return row[0] if row else None

    def has(self, key: str) -> bool:
        return self._conn().execute("SELECT 1 FROM readings WHERE key=?", (key,)).fetchone() is not None

    def counts(self) -> dict:
        total, pending, rejected = self._conn().execute(
            "SELECT COUNT(*), SUM(uploaded IS NULL AND rejected IS NULL), "
            "SUM(rejected IS NOT NULL AND uploaded IS NULL) FROM readings").fetchone()
        return {"total": total, "pending": pending or 0, "rejected": rejected or 0}

    def all(self) -> list[Reading]:
        rows = self._conn().execute(
            "SELECT key, device, kind, ts, value, source FROM readings ORDER BY id").fetchall()
        return [Reading(k, d, kind, ts, json.loads(v), s) for k, d, kind, ts, v, s in rows]

    def prune(self, keep_seconds: float) -> int:
        """Forget uploaded readings older than ``keep_seconds`` (never pending ones)."""
        cur = self._conn().execute("DELETE FROM readings WHERE uploaded IS NOT NULL AND uploaded < ?",
                                   (time.time() - keep_seconds,))
        return cur.rowcount

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
