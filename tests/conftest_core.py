"""Helpers shared by the core area's tests (heartbeat vectors, C core availability)."""

from __future__ import annotations

import glob
import json
import os
from _vectors import VECTORS_DIR  # noqa: E402

VECTORS = VECTORS_DIR

# JSON argument names of each arms_hb_set_* call, in C argument order.
HB_CALL_ARGS = {
    "arms_hb_set_cpu_usage": ("idx", "utilization"),
    "arms_hb_set_cpu_detail_usage": ("idx", "idle", "interrupt", "user", "sys", "other"),
    "arms_hb_set_mem_usage": ("idx", "used", "avail"),
    "arms_hb_set_disk_usage": ("idx", "used", "avail"),
    "arms_hb_set_traffic_count": ("ifidx", "in_octet", "out_octet", "in_packet", "out_packet",
                                  "in_error", "out_error"),
    "arms_hb_set_traffic_rate": ("ifidx", "in_octet", "out_octet", "in_packet", "out_packet",
                                 "in_error", "out_error"),
    "arms_hb_set_radiowave": ("ifidx", "misc", "max", "min", "avg"),
}


def _num(v):
    return int(v, 0) if isinstance(v, str) else int(v)


def hb_vector_files() -> list[str]:
    return sorted(glob.glob(os.path.join(VECTORS, "*", "hb-*.json")))


def load_hb_vector(path: str) -> dict:
    """Return {'name', 'packet', 'distribution_id', 'passphrase', 'calls'}.

    ``calls`` is a list of (method name without ``arms_hb_``, positional args, expect_eexist).
    """
    with open(path) as f:
        d = json.load(f)
    with open(os.path.join(os.path.dirname(path), d["file"]), "rb") as f:
        packet = f.read()
    inp = d["inputs"]
    raw_calls = inp.get("metric_calls_in_order",
                        inp.get("metrics_set_in_hb_store_statistics_cb_in_this_order", []))
    calls = []
    for c in raw_calls:
        args = tuple(_num(c[k]) for k in HB_CALL_ARGS[c["call"]])
        ret = c.get("returned", 0)
        eexist = isinstance(ret, str) and ret.startswith("1280") or ret == 1280
        calls.append((c["call"][len("arms_hb_"):], args, eexist))
    return {
        "name": os.path.relpath(path, VECTORS),
        "packet": packet,
        "distribution_id": inp["distribution_id"],
        "passphrase": inp["hmac_key"],
        "calls": calls,
    }


# arms-agent.md 1.5: the spec's own two vectors (passphrase "secret").
SPEC_DIST_ID = "0001-1234-5678-0101-0011-2233-4455-6677"
SPEC_EMPTY = bytes.fromhex(
    "00010014e629b97eba667d1d341e34f9a9eca09f695c7245"
    "0011001000011234567801010011223344556677")
SPEC_FULL_CALLS = [
    ("set_cpu_usage", (0, 42), False),
    ("set_cpu_usage", (0, 42), True),
    ("set_cpu_detail_usage", (1, 50, 5, 30, 10, 5), False),
    ("set_mem_usage", (0, 0x0102030405060708, 0x1112131415161718), False),
    ("set_disk_usage", (2, 1000, 2000), False),
    ("set_traffic_count", (3, 1, 2, 3, 4, 5, 6), False),
    ("set_traffic_rate", (3, 7, 8, 9, 10, 11, 12), False),
    ("set_radiowave", (4, 0, 90, 10, 55), False),
]
SPEC_FULL = bytes.fromhex(
    "00010014e3f509b9dacc8df4cad1483183d0068bacb06ce6"
    "0011001000011234567801010011223344556677"
    "00330003" "00002a"
    "00340007000132051e0a05"
    "0035001200000102030405060708" "1112131415161718"
    "00370012000200000000000003e8" "00000000000007d0"
    "003800320003" + "".join("%016x" % v for v in (1, 2, 3, 4, 5, 6)) +
    "003900320003" + "".join("%016x" % v for v in (7, 8, 9, 10, 11, 12)) +
    "002c00060004005a0a37")
