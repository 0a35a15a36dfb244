"""Everything ``arms-testserver serve`` runs, in one process and one state directory.

:class:`ServeStack` assembles a :class:`~libarms.testserver.server.TestServer` (LS and RS) with
its components, started in this order and stopped in reverse:

1. :class:`~libarms.testserver.pushservice.PushService`: push proxy and tunnel endpoint, and the
   REST API (``push-service.json`` holds its URL and bearer token);
2. :class:`~libarms.testserver.heartbeat.HeartbeatReceiver` on a UDP port (a free one unless
   given; ``heartbeat=False`` leaves it out), storing into ``heartbeats.db``;
3. :class:`~libarms.testserver.dashboard.Dashboard`: the web page, its JSON views and the
   readings collector (``readings.db``), all on the REST API's port.

Devices whose service config names no heartbeat server (``heartbeat`` null, the default) are
told by the RS to send to this receiver, every ``heartbeat_interval`` seconds, with a
passphrase made for the device on first use and kept in the server's database
(``kv`` key ``heartbeat-passphrase/<distribution id>``); the receiver checks their datagrams
with it. An operator's ``set-service --heartbeat ...`` replaces that default.
"""

from __future__ import annotations

import logging
import os
import secrets
from typing import Optional

from .dashboard import Dashboard
from .heartbeat import HeartbeatReceiver
from .pushservice import INFO_FILE, PushService
from .server import TestServer

log = logging.getLogger("libarms.testserver")

PASSPHRASE_KEY = "heartbeat-passphrase/"
DEFAULT_HEARTBEAT_INTERVAL = 60


class ServeStack:
    def __init__(self, state_dir: str, *, host: str = "127.0.0.1", ls_port: int = 0,
                 rs_port: int = 0, legacy_tls: bool = False,
                 push_methods=("https-tunnel", "https-simple"), proxy_port: int = 0,
                 rest_port: int = 0, rest_token: Optional[str] = None,
                 echo_interval: Optional[int] = None, heartbeat: bool = True,
                 heartbeat_port: int = 0,
                 heartbeat_interval: int = DEFAULT_HEARTBEAT_INTERVAL,
                 collector_token: Optional[str] = None):
        if heartbeat and not 1 <= heartbeat_interval <= 86400:
            raise ValueError(f"heartbeat interval {heartbeat_interval} outside 1..86400 s")
        self.server = TestServer(state_dir, host=host, ls_port=ls_port, rs_port=rs_port,
                                 legacy_tls=legacy_tls)
        self.push = PushService(state_dir, token=rest_token, proxy_port=proxy_port,
                                rest_port=rest_port, methods=tuple(push_methods),
                                echo_interval=echo_interval)
        self.heartbeat_interval = heartbeat_interval
        self.receiver: Optional[HeartbeatReceiver] = None
        if heartbeat:
            self.receiver = HeartbeatReceiver(host=host, port=heartbeat_port,
                                              passphrases=self._default_passphrase)
        self.info: dict = {}
        self.dashboard = Dashboard(self.push, heartbeat=self.receiver,
                                   collector_token=collector_token, info=self.info)

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> dict:
        """Bind everything (OSError if a port is taken) and return the URLs (``info``)."""
        srv = self.server
        srv.add_component(self.push)
        if self.receiver is not None:
            srv.add_component(self.receiver)
            srv.default_heartbeat = self._default_heartbeat
        srv.add_component(self.dashboard)
        try:
            srv.start()
        except BaseException:
            srv.stop()
            raise
        self.info.update({
            "ls_url": srv.ls_url, "rs_url": srv.rs_url, "ca": srv.ca_path,
            "legacy_tls": srv.legacy_tls, "pid": os.getpid(),
            "proxy_url": self.push.proxy.url, "tunnel_url": self.push.proxy.tunnel_url,
            "rest_url": self.push.rest.url, "dashboard_url": self.dashboard.url,
            "collector_url": self.dashboard.collector_url,
            "token_file": os.path.join(srv.state_dir, INFO_FILE)})
        if self.receiver is not None:
            self.info["heartbeat"] = f"{self.receiver.host}:{self.receiver.port}"
        return self.info

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    # -- the default heartbeat server ---------------------------------------------------------
    def passphrase(self, distribution_id: str) -> str:
        """The device's default heartbeat passphrase (made and stored on first use)."""
        db = self.server.db
        key = PASSPHRASE_KEY + distribution_id.upper()
        value = db.kv_get(key)
        if value is None:
            db.execute("INSERT INTO kv(key, value) VALUES(?, ?) ON CONFLICT(key) DO NOTHING",
                       (key, "hb-" + secrets.token_hex(16)))
            value = db.kv_get(key)
        return value

    def _default_heartbeat(self, distribution_id: str) -> list[dict]:
        rx = self.receiver
        return [{"host": rx.host, "port": rx.port, "passphrase": self.passphrase(distribution_id),
                 "interval": self.heartbeat_interval}]

    def _default_passphrase(self, distribution_id: str) -> Optional[str]:
        """Receiver lookup: the default passphrase of a registered device that uses the default
        server (None otherwise, so the receiver falls back to the service config's entries)."""
        db = self.server.db
        if db is None or db.device(distribution_id) is None:
            return None
        if db.service(distribution_id)["heartbeat"] is not None:
            return None
        return self.passphrase(distribution_id)


__all__ = ["ServeStack", "DEFAULT_HEARTBEAT_INTERVAL"]
