"""``arms-testserver request METHOD ...``: drive a push through the REST API and print the result.

Example: ``arms-testserver request md-command --device ID --module 1 'show status'``.
The API's URL and token come from ``--url``/``--token``, else ``$ARMS_REST_URL`` /
``$ARMS_REST_TOKEN``, else ``<state dir>/push-service.json``.
Exit status: 0 result 1xx, 1 other result code, 2 error (device not reachable, timeout, ...).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
from typing import Optional

import requests

from ..protocol import push as P
from .pushservice import INFO_FILE


class _IntermixedParser(argparse.ArgumentParser):
    """Lets the command text follow the options (``--module 1 'show status'``), also when this
    parser is a sub-command of another CLI."""

    _inside = False

    def parse_known_args(self, args=None, namespace=None):
        if self._inside:
            return super().parse_known_args(args, namespace)
        self._inside = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inside = False


def add_parser(subparsers, default_state_dir: Optional[str] = None) -> argparse.ArgumentParser:
    """Add the ``request`` sub-command to another CLI's sub-parsers."""
    p = subparsers.add_parser("request", help="run a push operation through the REST API",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.__class__ = _IntermixedParser
    p.add_argument("method", choices=list(P.PUSH_METHODS), help="push operation")
    p.add_argument("text", nargs="?", default=None,
                   help="md-command: the command; ping/traceroute: the address; "
                        "read-storage: running|candidate|backup; pull-config: LS|RS")
    p.add_argument("--device", "-d", required=True, help="distribution id of the target SA")
    p.add_argument("--module", "-m", type=int, action="append", help="module id (repeatable)")
    p.add_argument("--count", type=int, help="ping / traceroute count")
    p.add_argument("--size", type=int, help="ping size")
    p.add_argument("--maxhop", type=int, help="traceroute max hops")
    p.add_argument("--config", action="append", metavar="ID:VERSION=FILE",
                   help="configure: a module of the new module list and its config file (repeat)")
    p.add_argument("--user", default="test", help="user code in the REST path")
    p.add_argument("--url", help="REST API base URL")
    p.add_argument("--token", help="REST bearer token")
    if not any(a.dest == "state_dir" for a in p._actions):
        p.add_argument("--state-dir", default=default_state_dir, help="test server state directory")
    p.add_argument("--wait", type=float, default=90.0, help="seconds to wait for the result")
    p.add_argument("--json", action="store_true", help="print the whole request document")
    p.set_defaults(func=run)
    return p


def _endpoint(args) -> tuple[str, str]:
    url = args.url or os.environ.get("ARMS_REST_URL")
    token = args.token or os.environ.get("ARMS_REST_TOKEN")
    if (not url or not token) and getattr(args, "state_dir", None):
        try:
            with open(os.path.join(args.state_dir, INFO_FILE)) as f:
                info = json.load(f)
            url, token = url or info["rest_url"], token or info["token"]
        except (OSError, ValueError, KeyError):
            pass
    if not url or not token:
        raise SystemExit("arms-testserver request: no REST API known; give --url and --token, "
                         "or --state-dir of a running test server")
    return url.rstrip("/"), token


def body_of(args) -> dict:
    doc: dict = {"code": args.device}
    m, t = args.method, args.text
    mods = args.module or []
    if m == "md-command":
        if t is None:
            raise SystemExit("md-command needs the command text")
        doc["module"], doc["command"] = (mods[0] if mods else 0), t
    elif m in ("read-status", "clear-status"):
        doc["modules"] = mods or [0]
        if t is not None:
            doc["parameter"] = t
    elif m == "read-storage":
        doc["storage"] = t or "running"
    elif m in ("ping", "traceroute"):
        if not t:
            raise SystemExit(f"{m} needs the address")
        doc["address"] = t
        if args.count is not None:
            doc["count"] = args.count
        if args.size is not None:
            doc["size"] = args.size
        if args.maxhop is not None:
            doc["maxhop"] = args.maxhop
    elif m == "pull-config":
        doc["pullType"] = t or "RS"
    elif m == "configure":
        doc["modules"], doc["configs"] = [], []
        for spec in args.config or []:
            head, _, path = spec.partition("=")
            mid, _, version = head.partition(":")
            if not mid.isdigit() or not path:
                raise SystemExit(f"--config must be ID:VERSION=FILE, not {spec!r}")
            doc["modules"].append({"id": int(mid), "version": version})
            with open(path, "rb") as f:
                data = f.read()
            try:
                doc["configs"].append({"id": int(mid), "data": data.decode("ascii")})
            except UnicodeDecodeError:
                doc["configs"].append({"id": int(mid), "data": base64.b64encode(data).decode(), "base64": True})
    return doc


def run(args) -> int:
    url, token = _endpoint(args)
    s = requests.Session()
    s.trust_env = False                  # loopback API: no proxy or netrc from the environment
    s.headers["Authorization"] = f"Bearer {token}"
    base = f"{url}/user/{args.user}/request/{args.method}"
    try:
        r = s.post(base, json=body_of(args), timeout=30)
        if r.status_code != 201:
            print(f"error: {r.status_code} {r.text}", file=sys.stderr)
            return 2
        rid = r.json()["id"]
        deadline = time.monotonic() + args.wait
        doc = {}
        while time.monotonic() < deadline:
            wait = max(1, min(30, int(deadline - time.monotonic())))
            doc = s.get(f"{base}/{rid}", params={"wait": wait}, timeout=wait + 30).json()
            if doc["status"] in ("done", "error"):
                break
    except requests.RequestException as e:
        print(f"error: REST API at {url}: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(doc, indent=1))
    if doc.get("status") == "error":
        print(f"error: {doc.get('error')}", file=sys.stderr)
        return 2
    if doc.get("status") != "done":
        print(f"error: no result within {args.wait} s (request {rid} still {doc.get('status')})", file=sys.stderr)
        return 2
    if not args.json:
        _print_result(doc)
    code = doc.get("resultCode") or 0
    return 0 if 100 <= code < 200 else 1


def _print_result(doc: dict) -> None:
    code = doc.get("resultCode")
    print(f"result {code} {P.result_text(code or 0)} (via {doc.get('via')})")
    for r in doc.get("results") or []:
        data = r["data"]
        if r["encoding"] == "base64":
            data = base64.b64decode(data).hex()
        print(f"module {r['module']} result {r['result']}:")
        print(data)
    if "success" in doc:
        print(f"success {doc['success']} failure {doc['failure']}")
    for h in doc.get("hops") or []:
        print(f"{h['hop']:3d} {h['address']}")
    for m in doc.get("modules") or []:
        print(f"module {m['id']} version {m['version']} {m['info']}")
    if "transactions" in doc:
        print("transactions " + " ".join(str(t) for t in doc["transactions"]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="arms-testserver")
    sub = ap.add_subparsers(dest="cmd", required=True)
    add_parser(sub, os.environ.get("ARMS_TESTSERVER_DIR"))
    args = ap.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
