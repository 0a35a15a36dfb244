"""B-route smart-meter bridge (broute.md): SKSTACK-IP module driver, ECHONET Lite, meter model.

Layers, each usable and testable alone (broute.md §8):

==================  ===============================================================
``bridge.sk``       SKSTACK-IP lines: incremental reader (sans-I/O), family dialects
``bridge.driver``   pyserial I/O edge: one reader thread, serialised commands, events
``bridge.session``  join, supervision (state table + escalation ladder), ECHONET requests
``bridge.echonet``  ECHONET Lite frames (sans-I/O)
``bridge.meter``    class 0x0288 property decoders/encoders, scaling, wrap (sans-I/O)
``bridge.store``    durable reading queue (SQLite WAL, fsync), atomic file writes
``bridge.upload``   uploader to the collector (requests, idempotency keys, backoff)
``bridge.service``  ``broute-bridge``: poller, back-fill, on-demand reads, control socket
``bridge.mdcommand`` md-command handler (``meter get E7 E8``) for ``libarms.Callbacks``
``bridge.discovery`` pyudev dongle discovery and hot-plug hints
``bridge.sim``      ``broute-sim``: Wi-SUN module + smart meter simulator behind a pty
``bridge.demo``     a simulated meter with a running bridge, in one call
==================  ===============================================================

The bridge uses only the public libarms API (``from libarms import Callbacks, AppExecError``).
"""
