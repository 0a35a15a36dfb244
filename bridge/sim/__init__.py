"""broute-sim: a Wi-SUN module (SKSTACK-IP, family A or C) and a smart meter behind a pty.

Run ``broute-sim --link /tmp/wisun0 --profile bp35c2`` and point a bridge at ``/tmp/wisun0``.
With ``--control /tmp/wisun0.ctl``, faults can be injected while it runs, one command per
connection, e.g. ``echo 'link_down 30' | socat - UNIX-CONNECT:/tmp/wisun0.ctl`` (commands:
terminate_session, expire_session, link_down [s], link_up, tx_limit [s], garbage_line,
module_reset, unplug, replug, late_reply [n], drop_replies [n], advance_clock s,
set <knob> <value>, stats).
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from .meter import MeterConfig, MeterModel
from .module import Faults, ModuleSim, Timing, make_profile
from .runtime import Simulator

__all__ = ["Faults", "MeterConfig", "MeterModel", "ModuleSim", "Simulator", "Timing", "main",
           "make_profile"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="broute-sim", description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", choices=("bp35a1", "bp35c2"), default="bp35a1",
                    help="module family A (bp35a1) or C (bp35c2); default %(default)s")
    ap.add_argument("--link", default="/tmp/broute-sim0",
                    help="symlink to create for the device side of the pty (default %(default)s)")
    ap.add_argument("--control", help="UNIX socket path for fault commands")
    ap.add_argument("--time-scale", type=float, default=1.0,
                    help="multiplier for simulated radio delays (0 = instant; default 1)")
    ap.add_argument("--hex", action="store_true", help="module flash set to hex ERXUDP output")
    ap.add_argument("--ropt-unsupported", action="store_true",
                    help="answer ROPT/WOPT with FAIL ER04 and always output hex (RL7023 Stick-D/DSS)")
    ap.add_argument("--rbid", default=MeterConfig.rbid, help="the meter's B-route ID")
    ap.add_argument("--password", default=MeterConfig.password, help="the meter's B-route password")
    ap.add_argument("--solar", type=int, default=0, help="solar peak in W (makes E7 negative)")
    ap.add_argument("--session-lifetime", type=float, default=6 * 3600.0,
                    help="PANA session lifetime in seconds (default 6 h)")
    ap.add_argument("--notify-esv", choices=("INF", "INFC"), default="INFC",
                    help="ESV of the 30-minute EA/EB notification (default INFC, needs INFC_Res)")
    ap.add_argument("--j11", action="store_true",
                    help="behave like a J11 binary-UART module (to see the bridge refuse it)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the meter data and radio model")
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    meter = MeterConfig(rbid=args.rbid, password=args.password, solar_peak=args.solar,
                        seed=args.seed, notify_esv=0x73 if args.notify_esv == "INF" else 0x74)
    sim = Simulator(args.profile, path=args.link, time_scale=args.time_scale, meter=meter,
                    timing=Timing(session_lifetime=args.session_lifetime), seed=args.seed,
                    control=args.control, output_hex=args.hex,
                    ropt_unsupported=args.ropt_unsupported, family_j=args.j11)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: done.set())
    signal.signal(signal.SIGINT, lambda *a: done.set())
    sim.start()
    print(f"broute-sim: {args.profile} on {sim.path}", flush=True)
    done.wait()
    sim.stop()
    return 0
