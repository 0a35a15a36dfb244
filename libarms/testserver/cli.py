"""``arms-testserver``: run the test server, manage its devices and configs.

Examples::

    arms-testserver serve --state-dir /tmp/ts --ls-port 14443 --rs-port 15443
    arms-testserver add-device --state-dir /tmp/ts 0001-0000-1234-0005-0000-0000-0000-002A --ls-key SECRET
    arms-testserver set-location --state-dir /tmp/ts DISTID --line pppoe:1:user@isp:pass --line dhcp:2
    arms-testserver set-service --state-dir /tmp/ts DISTID --module 1001:1.0.0:info=config.txt
    arms-testserver initial-config --state-dir /tmp/ts > initial-config
    arms-testserver requests --state-dir /tmp/ts
    arms-testserver serve --state-dir /tmp/ts --heartbeat-port 16000   # fixed heartbeat port
    arms-testserver heartbeats --state-dir /tmp/ts
    arms-testserver request md-command --state-dir /tmp/ts --device DISTID --module 1 'show status'

``serve`` runs the LS, the RS, the push proxy and tunnel endpoint, the REST API, the UDP
heartbeat receiver, the readings collector and the web dashboard (``dashboard_url`` in the JSON
line it prints; the bearer token is in STATE_DIR/push-service.json). The subcommands other
than ``serve`` edit the SQLite file directly; a running server sees the
change on the next request.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import signal
import sys
import threading

from ..protocol.distid import DistributionId
from ..errors import ConfigError
from .db import Database, UnknownDevice

LINE_TYPES = ("pppoe", "pppoe-ipv6", "dhcp", "mobile", "static", "ra")


def _db(args) -> Database:
    os.makedirs(args.state_dir, mode=0o700, exist_ok=True)
    return Database(os.path.join(args.state_dir, "testserver.db"))


def _distid(text: str) -> str:
    try:
        return str(DistributionId.parse(text))
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e))


def _line(text: str) -> dict:
    """TYPE:IFINDEX[:ACCOUNT:PASSWORD] or TYPE:IFINDEX:key=value,..."""
    parts = text.split(":")
    if parts[0] not in LINE_TYPES or len(parts) < 2 or not parts[1].isdigit():
        raise argparse.ArgumentTypeError(f"line must be TYPE:IFINDEX[:ACCOUNT:PASSWORD] with TYPE one "
                                         f"of {', '.join(LINE_TYPES)}: {text!r}")
    d = {"type": parts[0], "ifindex": int(parts[1])}
    rest = parts[2:]
    if rest and "=" in rest[0]:
        for kv in ":".join(rest).split(","):
            k, _, v = kv.partition("=")
            d[k] = v
    elif len(rest) == 2:
        d["account"], d["password"] = rest
    elif rest:
        raise argparse.ArgumentTypeError(f"bad line {text!r}")
    return d


def _module(text: str) -> dict:
    """ID:VERSION:INFO[=CONFIG_FILE]"""
    spec, _, path = text.partition("=")
    parts = spec.split(":", 2)
    if len(parts) != 3 or not parts[0].isdigit():
        raise argparse.ArgumentTypeError(f"module must be ID:VERSION:INFO[=CONFIG_FILE]: {text!r}")
    m = {"id": int(parts[0]), "version": parts[1], "info": parts[2]}
    if path:
        data = open(path, "rb").read()
        try:
            m["config"] = data.decode("ascii")
        except UnicodeDecodeError:
            m["config_b64"] = base64.b64encode(data).decode("ascii")
    return m


def _heartbeat(text: str) -> dict:
    """HOST:PORT:PASSPHRASE:INTERVAL"""
    parts = text.rsplit(":", 3)
    if len(parts) != 4 or not parts[1].isdigit() or not parts[3].isdigit():
        raise argparse.ArgumentTypeError(f"heartbeat must be HOST:PORT:PASSPHRASE:INTERVAL: {text!r}")
    return {"host": parts[0], "port": int(parts[1]), "passphrase": parts[2], "interval": int(parts[3])}


def cmd_serve(args) -> int:
    from .stack import ServeStack
    try:
        stack = ServeStack(args.state_dir, host=args.host, ls_port=args.ls_port,
                           rs_port=args.rs_port, legacy_tls=args.legacy_tls,
                           push_methods=args.push_methods.split(","), proxy_port=args.proxy_port,
                           rest_port=args.rest_port, rest_token=args.rest_token,
                           echo_interval=args.echo_interval, heartbeat=not args.no_heartbeat,
                           heartbeat_port=args.heartbeat_port or 0,
                           heartbeat_interval=args.heartbeat_interval,
                           collector_token=args.collector_token)
    except ValueError as e:
        print(f"arms-testserver: {e}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    try:
        info = stack.start()
    except OSError as e:
        print(f"arms-testserver: cannot listen: {e}", file=sys.stderr)
        return 2
    if args.ready_file:
        from .._atomic import write_atomic
        write_atomic(args.ready_file, (json.dumps(info) + "\n").encode(), 0o644)
    print(json.dumps(info), flush=True)
    while not stop.wait(3600):
        pass
    stack.stop()
    return 0


def cmd_heartbeats(args) -> int:
    """Counters and what every device last reported, from STATE_DIR/heartbeats.db."""
    import sqlite3
    path = os.path.join(args.state_dir, "heartbeats.db")
    if not os.path.exists(path):
        print(f"arms-testserver: no heartbeats received yet ({path} missing)", file=sys.stderr)
        return 1
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    out = {"counters": dict(con.execute("SELECT name, value FROM hb_counter")), "devices": {}}
    where, params = "", ()
    if args.distribution_id:
        where, params = " WHERE distribution_id=?", (args.distribution_id.upper(),)
    for dist, n, last in con.execute("SELECT distribution_id, COUNT(*), MAX(received) FROM "
                                     "hb_packet" + where + " GROUP BY distribution_id", params):
        metrics = {f"{k}/{i}": json.loads(v) for k, i, v in con.execute(
            "SELECT kind, idx, value FROM hb_metric WHERE distribution_id=? ORDER BY kind, idx",
            (dist,))}
        out["devices"][dist] = {"packets": n, "last": last, "metrics": metrics}
    con.close()
    print(json.dumps(out, indent=2, sort_keys=True))
    return 0


def cmd_add_device(args) -> int:
    db = _db(args)
    db.add_device(args.distribution_id, args.ls_key, rs_key=args.rs_key, description=args.description)
    print(f"device {args.distribution_id} added; RS key {db.location(args.distribution_id)['rs_key']}")
    return 0


def cmd_set_location(args) -> int:
    ch = {}
    if args.rs_url:
        ch["rs_urls"] = args.rs_url
    if args.line:
        ch["lines"] = args.line
    for k in ("ll_timeout", "rs_retry_max", "rs_retry_interval", "result"):
        v = getattr(args, k)
        if v is not None:
            ch[k] = v if not (k == "result" and v == 0) else None
    _db(args).set_location(args.distribution_id, **ch)
    return 0


def cmd_set_service(args) -> int:
    ch = {}
    if args.module:
        ch["modules"] = args.module
    if args.heartbeat:
        ch["heartbeat"] = args.heartbeat
    elif args.no_heartbeat:
        ch["heartbeat"] = []
    elif args.default_heartbeat:
        ch["heartbeat"] = None
    if args.rs_pull_url:
        ch["rs_pull_urls"] = args.rs_pull_url
    if args.push_address:
        ch["push_addresses"] = args.push_address
    for k in ("push_port", "push_timeout", "result"):
        v = getattr(args, k)
        if v is not None:
            ch[k] = v if not (k == "result" and v == 0) else None
    _db(args).set_service(args.distribution_id, **ch)
    return 0


def cmd_show(args) -> int:
    db = _db(args)
    out = []
    for d in db.devices():
        out.append({"distribution_id": d["distribution_id"], "description": d["description"],
                    "location": db.location(d["distribution_id"]),
                    "service": db.service(d["distribution_id"])})
    print(json.dumps(out, indent=2))
    return 0


def cmd_requests(args) -> int:
    for r in _db(args).requests(args.distribution_id):
        print(f"{r['id']:5d} {r['ts']:.3f} {r['role']:3s} {r['path']:12s} {r['distribution_id'] or '-'} "
              f"{r['type'] or '-'} trigger={r['trig']!r} http={r['http_status']} result={r['result_code']}")
    return 0


def cmd_initial_config(args) -> int:
    url = _db(args).kv_get("ls_url")
    if not url:
        print("arms-testserver: the server has not run in this state dir yet", file=sys.stderr)
        return 1
    sys.stdout.write(f"{url}\n\n{args.retry_interval}\n{args.retry_max}\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="arms-testserver", description="ARMS test server (LS + RS) on loopback")
    p.add_argument("-v", "--verbose", action="store_true", help="log every request")
    sub = p.add_subparsers(dest="cmd", required=True)

    def sd(sp):
        sp.add_argument("--state-dir", required=True, help="directory with the CA, the SQLite db and logs")

    s = sub.add_parser("serve", help="run the LS, RS, push proxy, REST API, heartbeat receiver, "
                                     "readings collector and dashboard until SIGTERM/SIGINT")
    sd(s)
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--ls-port", type=int, default=0, help="LS port (default: any free port)")
    s.add_argument("--rs-port", type=int, default=0, help="RS port (default: any free port)")
    s.add_argument("--legacy-tls", action="store_true",
                   help="also accept TLS 1.0 (the real libarms 5.33 client); refused otherwise")
    s.add_argument("--ready-file", help="write the URLs as JSON here once listening")
    s.add_argument("--heartbeat-port", type=int, metavar="PORT",
                   help="receive heartbeats on this UDP port (default: any free port); they are "
                        "checked with the passphrases the RS handed out and stored in "
                        "STATE_DIR/heartbeats.db (see the 'heartbeats' command). Devices whose "
                        "service config sets no heartbeat server are told to send here")
    s.add_argument("--heartbeat-interval", type=int, default=60, metavar="S",
                   help="interval announced with this receiver (default 60 s)")
    s.add_argument("--no-heartbeat", action="store_true",
                   help="run no heartbeat receiver (devices are told none unless configured)")
    s.add_argument("--collector-token",
                   help="a second bearer token that the readings collector accepts (for "
                        "bridges), besides the REST token")
    s.add_argument("--push-methods", default="https-tunnel,https-simple",
                   help="push methods the proxy offers, in order of preference")
    s.add_argument("--proxy-port", type=int, default=0, help="tunnel/proxy port (default: any free port)")
    s.add_argument("--rest-port", type=int, default=0, help="REST API port (default: any free port)")
    s.add_argument("--rest-token", help="REST bearer token (default: random, in push-service.json)")
    s.add_argument("--echo-interval", type=int, help="tunnel echo interval announced to devices")
    s.set_defaults(fn=cmd_serve)

    s = sub.add_parser("heartbeats", help="print heartbeat counters, devices and latest metrics")
    sd(s)
    s.add_argument("distribution_id", nargs="?", type=_distid)
    s.set_defaults(fn=cmd_heartbeats)

    s = sub.add_parser("add-device", help="register a device (distribution id and LS-SA key)")
    sd(s)
    s.add_argument("distribution_id", type=_distid)
    s.add_argument("--ls-key", required=True, help="the device's LS-SA key")
    s.add_argument("--rs-key", help="RS-SA key to hand out (default: random)")
    s.add_argument("--description", default="")
    s.set_defaults(fn=cmd_add_device)

    s = sub.add_parser("set-location", help="what the LS answers this device")
    sd(s)
    s.add_argument("distribution_id", type=_distid)
    s.add_argument("--rs-url", action="append", help="RS URL (repeat, at most 5; default this server's RS)")
    s.add_argument("--line", action="append", type=_line, help="stage-2 line TYPE:IFINDEX[:ACCOUNT:PASSWORD] (repeat)")
    s.add_argument("--ll-timeout", type=int)
    s.add_argument("--rs-retry-max", type=int)
    s.add_argument("--rs-retry-interval", type=int)
    s.add_argument("--result", type=int, help="answer this result code instead (0: normal)")
    s.set_defaults(fn=cmd_set_location)

    s = sub.add_parser("set-service", help="what the RS answers this device")
    sd(s)
    s.add_argument("distribution_id", type=_distid)
    s.add_argument("--module", action="append", type=_module, help="ID:VERSION:INFO[=CONFIG_FILE] (repeat)")
    hb = s.add_mutually_exclusive_group()
    hb.add_argument("--heartbeat", action="append", type=_heartbeat,
                    help="HOST:PORT:PASSPHRASE:INTERVAL (repeat; default: the serving "
                         "process's own receiver)")
    hb.add_argument("--no-heartbeat", action="store_true", help="announce no heartbeat server")
    hb.add_argument("--default-heartbeat", action="store_true",
                    help="back to the default (the serving process's own receiver)")
    s.add_argument("--rs-pull-url", action="append", help="rs-pull-server-url (repeat; default this RS)")
    s.add_argument("--push-address", action="append", help="rs-push-server-address (repeat)")
    s.add_argument("--push-port", type=int)
    s.add_argument("--push-timeout", type=int)
    s.add_argument("--result", type=int, help="answer this result code instead (0: normal)")
    s.set_defaults(fn=cmd_set_service)

    s = sub.add_parser("show", help="print devices and their configs as JSON")
    sd(s)
    s.set_defaults(fn=cmd_show)

    s = sub.add_parser("requests", help="list the requests served")
    sd(s)
    s.add_argument("distribution_id", nargs="?", type=_distid)
    s.set_defaults(fn=cmd_requests)

    s = sub.add_parser("initial-config", help="print an initial config pointing at this server's LS")
    sd(s)
    s.add_argument("--retry-interval", type=int, default=1)
    s.add_argument("--retry-max", type=int, default=1)
    s.set_defaults(fn=cmd_initial_config)

    from .restcli import add_parser as add_request_parser, run as run_request
    add_request_parser(sub).set_defaults(fn=run_request)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return args.fn(args)
    except UnknownDevice as e:
        print(f"arms-testserver: {e.args[0]}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
