"""Upload queued readings to the collector with ``requests``: idempotency keys, backoff.

Wire format (served by ``libarms.testserver.collector``)::

    POST <url>    Content-Type: application/json
                  Idempotency-Key: <sha256 of the batch's reading keys>
                  Authorization: Bearer <token>          (when configured)
    {"device": "<id>", "readings": [{"key", "kind", "ts", "value", "source"}, ...]}
    -> 200 {"stored": n, "duplicates": m}

Reading kinds and values (``null`` = the meter had no data; never 0 in its place):

* ``power_w`` (int, E7; negative = export), ``current_r_a`` / ``current_t_a`` (decimal string,
  E8), ``energy_normal_kwh`` / ``energy_reverse_kwh`` (decimal string, E0/E3 scaled by D3 and E1)
  — ``ts`` is the bridge's receive time (UTC);
* ``halfhour_normal_kwh`` / ``halfhour_reverse_kwh`` (decimal string: the cumulative counter at
  the boundary, from EA/EB notifications and polls or EC/E2/E4 back-fill) — ``ts`` is the
  meter's :00/:30 time (JST, ``+09:00``) and the key is ``device/kind/ts``.

``source`` is ``poll``, ``notification``, ``backfill`` or ``command`` (an md-command read).

A reading is marked uploaded only after a 2xx. A crash between the collector's commit and our
mark means the batch is sent again; the collector ignores keys it already has.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
from typing import Optional

import requests

from .store import Store

log = logging.getLogger("bridge.upload")


class Uploader:
    def __init__(self, store: Store, url: str, device: str, token: Optional[str] = None,
                 batch: int = 100, timeout: float = 10.0, backoff=(1.0, 2.0, 5.0, 15.0, 60.0, 300.0),
                 idle_wait: float = 5.0, stop: Optional[threading.Event] = None):
        self.store = store
        self.url = url
        self.device = device
        self.token = token
        self.batch = batch
        self.timeout = timeout
        self.backoff = backoff
        self.idle_wait = idle_wait
        self.stop = stop or threading.Event()
        self.http = requests.Session()
        self.failures = 0
        self.uploaded = 0
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="bridge-upload", daemon=True)
        self._thread.start()

    def join(self, timeout: float = 5.0) -> None:
        self.store.wake()                 # an idle uploader sees ``stop`` right away
        if self._thread:
            self._thread.join(timeout)

    def upload_once(self) -> int:
        """Send one batch; returns how many readings were acknowledged (0 if none pending)."""
        batch = self.store.pending(self.batch)
        if not batch:
            return 0
        keys = [r.key for r in batch]
        headers = {"Idempotency-Key": hashlib.sha256("\n".join(keys).encode()).hexdigest()}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        body = {"device": self.device, "readings": [r.as_json() for r in batch]}
        resp = self.http.post(self.url, json=body, headers=headers, timeout=self.timeout)
        if resp.status_code // 100 != 2:
            raise requests.HTTPError(f"collector answered {resp.status_code}: {resp.text[:200]}",
                                     response=resp)
        self.store.mark_uploaded(keys)
        self.uploaded += len(keys)
        log.debug("uploaded %d readings (%s)", len(keys), resp.text[:100])
        return len(keys)

    def run(self) -> None:
        while not self.stop.is_set():
            mark = self.store.added_mark()
            try:
                n = self.upload_once()
            except (requests.RequestException, OSError, ValueError) as exc:
                delay = self.backoff[min(self.failures, len(self.backoff) - 1)]
                delay *= 0.8 + 0.4 * random.random()
                self.failures += 1
                log.warning("upload failed (%s); retrying in %.1f s", exc, delay)
                self.stop.wait(delay)
                continue
            if self.failures:
                log.info("upload recovered after %d failure(s)", self.failures)
                self.failures = 0
            if n == 0:
                self.store.wait_for_pending(self.idle_wait, since=mark, stop=self.stop)
