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

What the collector answers decides what happens to a batch:

* 2xx: the readings are marked uploaded;
* 400 or 422 (the batch is malformed): the batch is split in halves and each half sent again,
  down to single readings; a single reading refused that way is set aside as *rejected* (kept in
  the queue with the collector's reason, counted in the status, logged at ERROR) so one bad
  reading never blocks the ones behind it. Rejected readings are retried at the next start;
* 413 (too large): the batch size is halved (down to 1) and the batch sent again at once;
* anything else (401/403/404: our configuration; 408/429/5xx, connection errors: the
  collector's state): retried with backoff, in order, for as long as it takes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
from typing import Optional

import requests

from .store import Store

log = logging.getLogger("bridge.upload")


class Uploader:
    #: single readings refused one after the other before the uploader stops setting readings
    #: aside and backs off instead: a collector that refuses everything is not a bad reading
    MAX_REFUSED_IN_A_ROW = 3

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
        self.rejected = 0
        self._refused_in_a_row = 0
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        again = self.store.retry_rejected()
        if again:
            log.info("%d reading(s) the collector refused before are pending again", again)
        self._thread = threading.Thread(target=self.run, name="bridge-upload", daemon=True)
        self._thread.start()

    def join(self, timeout: float = 5.0) -> None:
        self.store.wake()                 # an idle uploader sees ``stop`` right away
        if self._thread:
            self._thread.join(timeout)

    def upload_once(self) -> int:
        """Send one batch; returns how many readings it settled, acknowledged or set aside as
        rejected (0 if none were pending)."""
        batch = self.store.pending(self.batch)
        if not batch:
            return 0
        rejected = self.rejected
        return self._send(batch) + (self.rejected - rejected)

    def _body_bytes(self, batch: list) -> bytes:
        return json.dumps({"device": self.device,
                           "readings": [r.as_json() for r in batch]}).encode()

    def _post(self, batch: list):
        keys = [r.key for r in batch]
        headers = {"Idempotency-Key": hashlib.sha256("\n".join(keys).encode()).hexdigest(),
                   "Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return self.http.post(self.url, data=self._body_bytes(batch), headers=headers,
                              timeout=self.timeout)

    def _send(self, batch: list) -> int:
        """Send ``batch``, splitting it while the collector calls it malformed (see the module
        docstring); returns how many readings were acknowledged. Raises for a retryable answer."""
        resp = self._post(batch)
        code = resp.status_code
        if code // 100 == 2:
            self._refused_in_a_row = 0
            keys = [r.key for r in batch]
            self.store.mark_uploaded(keys)
            self.uploaded += len(keys)
            log.debug("uploaded %d readings (%s)", len(keys), resp.text[:100])
            return len(keys)
        if code == 413 and len(batch) > 1:
            self.batch = max(1, min(self.batch, len(batch)) // 2)
            log.warning("collector refused %d readings as too large; batch size now %d",
                        len(batch), self.batch)
            return self._send(batch[:self.batch])
        if code in (400, 422) and len(batch) > 1 and \
                self._refused_in_a_row < self.MAX_REFUSED_IN_A_ROW:
            half = len(batch) // 2
            log.warning("collector refused a batch of %d readings (%d: %s); sending it in "
                        "halves to find the bad one", len(batch), code, resp.text[:200])
            return self._send(batch[:half]) + self._send(batch[half:])
        if code in (400, 413, 422) and self._refused_in_a_row < self.MAX_REFUSED_IN_A_ROW:
            reading = batch[0]
            reason = f"{code}: {resp.text[:300]}"
            self.store.reject(reading.key, reason)
            self.rejected += 1
            self._refused_in_a_row += 1
            log.error("collector refused reading %s (%s %s) as malformed; set aside, retried at "
                      "the next start: %s", reading.key, reading.kind, reading.ts, reason)
            return 0
        if code in (400, 413, 422):
            log.error("collector refused %d readings in a row: the fault is likely ours "
                      "(device id, configuration) or the collector's, not the readings'; "
                      "keeping them queued and retrying", self._refused_in_a_row)
        raise requests.HTTPError(f"collector answered {code}: {resp.text[:200]}", response=resp)

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
