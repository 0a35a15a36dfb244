"""The simulated Wi-SUN module: SKSTACK-IP command handling and the radio/PANA model (broute.md §7.2-7.4).

Sans-I/O: ``feed(bytes)`` takes what the host wrote, output goes to the ``out`` callable, and
delays go through ``schedule(seconds, fn)`` (the runtime applies the time scale). All randomness
comes from one seeded ``random.Random``.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from typing import Callable, Optional

from .. import echonet as el
from ..errors import FrameError
from ..sk import link_local_from_mac, normalize_ipaddr
from .meter import MeterModel

log = logging.getLogger("bridge.sim.module")

MULTICAST = "FF02:0000:0000:0000:0000:0000:0000:0001"


@dataclasses.dataclass
class Profile:
    name: str
    family: str
    version: str
    appver: str
    mac: str
    # quirks (§7.2)
    echo_default: int = 1
    ropt_unsupported: bool = False
    sendto_leading_crlf: bool = False
    wopt_write_budget: int = 100
    channel_page: str = "09"
    event21_ns_first: bool = False
    family_j: bool = False
    output_hex: bool = False        # the "flash" value of WOPT bit 0 at power-up


PROFILES = {
    "bp35a1": dict(name="bp35a1", family="A", version="1.2.10", appver="rev26e",
                   mac="001D129012345678"),
    "bp35c2": dict(name="bp35c2", family="C", version="1.5.2", appver="rev00",
                   mac="001D129112345678"),
}


def make_profile(name: str, **quirks) -> Profile:
    try:
        base = dict(PROFILES[name])
    except KeyError:
        raise ValueError(f"unknown module profile {name!r} (known: {', '.join(PROFILES)})") from None
    base.update(quirks)
    return Profile(**base)


@dataclasses.dataclass
class Timing:
    """Simulated seconds (the runtime multiplies by its time scale)."""

    join_time: float = 3.0
    join_fail_time: float = 8.0
    join_timeout: float = 40.0
    reply_latency: tuple = (0.3, 2.5)
    d5_delay: tuple = (1.0, 3.0)
    notify_delay: tuple = (5.0, 60.0)
    session_lifetime: float = 6 * 3600.0   # real seconds (not time-scaled)
    reauth_time: float = 2.0
    late_reply_delay: float = 30.0         # real seconds: must outlast the bridge's timeout
    infc_retry_after: float = 20.0         # real seconds


@dataclasses.dataclass
class Faults:
    loss_rate: float = 0.0
    reply_loss_rate: float = 0.0
    duplicate_rate: float = 0.0
    d5_inf_prob: float = 1.0
    reauth_fail: bool = False
    strict_pairing: bool = True
    late_replies: int = 0           # how many next replies come late
    drop_replies: int = 0           # how many next replies are lost
    link_down: bool = False
    tx_limited: bool = False


class ModuleSim:
    def __init__(self, profile: Profile, meter: MeterModel, out: Callable[[bytes], None],
                 schedule: Callable[[float, Callable[[], None]], None],
                 timing: Optional[Timing] = None, faults: Optional[Faults] = None,
                 seed: int = 0, neighbours=()):
        self.p = profile
        #: Other meters in radio range (MeterConfig-like: channel, pan_id, mac, lqi, rbid); they
        #: answer scans (mode 2 only with a matching pairing ID unless strict_pairing is off)
        #: but never accept our credentials.
        self.neighbours = list(neighbours)
        self.meter = meter
        self.out = out
        self.schedule = schedule
        self.t = timing or Timing()
        self.f = faults or Faults()
        self.rng = random.Random(seed)
        self.hex_output = profile.output_hex or profile.ropt_unsupported
        self.wopt_writes = 0
        self.own_ip = link_local_from_mac(profile.mac)
        self.meter_ip = link_local_from_mac(meter.cfg.mac)
        self.stats = {"commands": 0, "sendto": 0, "replies": 0, "joins": 0, "infc_res": 0,
                      "notifications": 0, "fail": 0}
        self.last_boundary = None
        self._pending_infc = {}
        self._meter_tid = 0xA000
        self.power_on()

    # -- state ----------------------------------------------------------------------------

    def power_on(self) -> None:
        """Power-on / SKRESET defaults (output mode survives: it is in flash)."""
        self.sfe = self.p.echo_default
        self.regs = {"S02": "21", "S03": "FFFF", "S0A": "00000000", "S15": "1", "S16": "5460",
                     "S17": "1", "SA0": "1", "SA1": "1", "SA2": "0", "SFB": "0",
                     "SFD": "0000000000000000", "SFE": str(self.sfe), "SFF": "0", "S07": "00000000"}
        self.rbid = None
        self.pwd = None
        self.session = False
        self.joining = False
        self.gen = getattr(self, "gen", 0) + 1       # invalidates scheduled session callbacks
        self._inbuf = bytearray()
        self._sendto = None                          # (header tokens, datalen) while in data mode

    # -- output helpers -----------------------------------------------------------------------

    def _line(self, text: str) -> None:
        self.out(text.encode("ascii") + b"\r\n")

    def _side(self) -> str:
        return " 0" if self.p.family == "C" else ""

    def event(self, num: int, addr: Optional[str] = None, param: Optional[int] = None) -> None:
        text = f"EVENT {num:02X}"
        if addr is not None:
            text += f" {addr}{self._side()}"
        if param is not None:
            text += f" {param:02X}"
        self._line(text)

    def erxudp(self, sender: str, dest: str, rport: int, lport: int, sender_mac: str,
               secured: int, data: bytes) -> None:
        head = f"ERXUDP {sender} {dest} {rport:04X} {lport:04X} {sender_mac}"
        if self.p.family == "C":
            if self.regs["SA2"] == "1":
                head += f" {self.meter.cfg.lqi:02X}"
            head += f" {secured} 0"
        else:
            head += f" {secured}"
        head += f" {len(data):04X} "
        if self.hex_output:
            self.out(head.encode() + data.hex().upper().encode() + b"\r\n")
        else:
            self.out(head.encode() + data + b"\r\n")

    def _ok(self, value: Optional[str] = None, cr_only: bool = False) -> None:
        end = b"\r" if cr_only else b"\r\n"
        self.out((b"OK" + (b" " + value.encode() if value else b"")) + end)

    def _fail(self, code: int, cr_only: bool = False) -> None:
        self.stats["fail"] += 1
        self.out(f"FAIL ER{code:02d}".encode() + (b"\r" if cr_only else b"\r\n"))

    # -- input ------------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        self._inbuf += data
        for _ in range(len(self._inbuf) + 1):
            if not self._step():
                break

    def _step(self) -> bool:
        buf = self._inbuf
        if not buf:
            return False
        if self._sendto is not None:
            tokens, datalen = self._sendto
            if len(buf) < datalen:
                return False
            payload = bytes(buf[:datalen])
            del buf[:datalen]
            self._sendto = None
            self._finish_sendto(tokens, payload)
            return True
        if buf.startswith(b"SKSENDTO "):
            header = self._sendto_header()
            if header is not None:
                return header
        idx = [i for i in (buf.find(b"\r"), buf.find(b"\n")) if i >= 0]
        if not idx:
            if len(buf) > 255:
                del buf[:]
                self._fail(9)
            return False
        end = min(idx)
        raw = bytes(buf[:end])
        del buf[:end + 1]
        if raw:
            self._command_line(raw)
        return True

    def _sendto_header(self):
        """Enter data mode on a complete SKSENDTO header.

        Returns True when consumed, False when more bytes are needed, None when the bytes are
        an ordinary (bad) line. A header in the other family's syntax is answered ER05 after the
        announced bytes have been swallowed, as the module would misparse it.
        """
        buf = self._inbuf
        text = bytes(buf[:200])
        line_cut = False
        for i, byte in enumerate(text):
            if byte in (0x0D, 0x0A):
                text, line_cut = text[:i], True
                break
        complete = text.split(b" ")[:-1]          # tokens followed by a space
        fam_c = self.p.family == "C"

        def enter(ntokens: int, tokens, datalen: int) -> bool:
            header = b" ".join(complete[:ntokens]) + b" "
            if self.sfe:
                self.out(header + b"\r\n")
            del buf[:len(header)]
            self._sendto = (tokens, datalen)
            return True

        if fam_c and len(complete) >= 6 and len(complete[5]) == 4 and _hex(complete[5].decode()):
            return enter(6, None, int(complete[5], 16))          # A syntax sent to a C module
        if not fam_c and len(complete) >= 7 and len(complete[5]) == 1 and len(complete[6]) == 4 \
                and _hex(complete[6].decode()):
            return enter(7, None, int(complete[6], 16))          # C syntax sent to an A module
        want = 7 if fam_c else 6
        if len(complete) >= want and (fam_c or len(complete[5]) != 1):
            tokens = [t.decode("ascii", "replace") for t in complete[:want]]
            dl = tokens[-1]
            if len(dl) != 4 or not _hex(dl) or not 1 <= int(dl, 16) <= 0x4D0:
                del buf[:sum(len(t) + 1 for t in complete[:want])]
                self._fail(6)
                return True
            return enter(want, tokens, int(dl, 16))
        if line_cut or len(buf) >= 200:
            return None
        return False

    def _command_line(self, raw: bytes) -> None:
        if self.p.family_j:
            # A J11-style binary response header: unique code, command 0x2FFF, length 0.
            self.out(b"\xd0\xf9\xee\x5d\x2f\xff\x00\x04\x03\x8b\x00\x00\x00\x00\x00\x00")
            return
        if any(b < 0x20 or b > 0x7E for b in raw) or len(raw) > 255:
            self._fail(9)
            return
        text = raw.decode("ascii")
        if self.sfe:
            self._line(text)
        self.stats["commands"] += 1
        tokens = text.split(" ")
        name, args = tokens[0], tokens[1:]
        handler = getattr(self, "cmd_" + name.lower(), None)
        if handler is None or not name.isalnum():
            self._fail(4)
            return
        try:
            handler(args)
        except _Fail as exc:
            self._fail(exc.code, cr_only=name in ("ROPT", "WOPT", "RUART", "WUART"))

    # -- commands ---------------------------------------------------------------------------

    def cmd_skver(self, args):
        _arity(args, 0)
        self._line(f"EVER {self.p.version}")
        self._ok()

    def cmd_skappver(self, args):
        _arity(args, 0)
        if self.p.ropt_unsupported:
            raise _Fail(4)
        self._line(f"EAPPVER {self.p.appver}")
        self._ok()

    def cmd_skreset(self, args):
        _arity(args, 0)
        self.power_on()
        self._ok()

    def cmd_skinfo(self, args):
        _arity(args, 0)
        fifth = "FFFE" if self.p.family == "A" else "0"
        self._line(f"EINFO {self.own_ip} {self.p.mac} {self.regs['S02']} {self.regs['S03']} {fifth}")
        self._ok()

    def cmd_sksreg(self, args):
        if not 1 <= len(args) <= 2:
            raise _Fail(5)
        reg = args[0].upper()
        if len(reg) == 2 and reg[0] == "S" and reg[1] in "0123456789":
            reg = "S0" + reg[1]
        if reg not in self.regs:
            raise _Fail(6)
        if len(args) == 1:
            self._line(f"ESREG {self.regs[reg]}")
            self._ok()
            return
        val = args[1].upper()
        if not _hex(val) or reg in ("S07", "SFB", "SFD"):
            raise _Fail(6)
        if reg == "S02" and not 0x21 <= int(val, 16) <= 0x3C:
            raise _Fail(6)
        if reg == "SFE":
            self.sfe = 1 if val == "1" else 0
        if reg == "SA2" and self.p.family == "A":
            self._ok()                 # accepted, no effect on ERXUDP (§1.7.5)
            return
        self.regs[reg] = val
        self._ok()

    def cmd_sksetpwd(self, args):
        _arity(args, 2)
        if not _hex(args[0]) or int(args[0], 16) != len(args[1]) or not 1 <= len(args[1]) <= 32:
            raise _Fail(6)
        self.pwd = args[1]
        self._ok()

    def cmd_sksetrbid(self, args):
        _arity(args, 1)
        if len(args[0]) != 32:
            raise _Fail(6)
        self.rbid = args[0]
        self.regs["S0A"] = args[0][-8:]
        self._ok()

    def cmd_skscan(self, args):
        want = 4 if self.p.family == "C" else 3
        _arity(args, want)
        mode, mask, dur = args[0], args[1], args[2]
        if mode not in ("0", "2", "3") or not _hex(mask, 8) or not _hex(dur, 1) or int(dur, 16) > 14:
            raise _Fail(6)
        if want == 4 and args[3] not in ("0", "1"):
            raise _Fail(6)
        self._ok()
        d = int(dur, 16)
        mask_v = int(mask, 16)
        dwell = 0.01 * (2 ** d + 1)
        gen = self.gen
        if mode == "0":
            def ed_done():
                if self.gen == gen:
                    self.event(0x1F, self.own_ip)
                    self._line("EEDSCAN")
                    self._line(" ".join(f"{ch:02X} {self.rng.randrange(0x20, 0x60):02X}"
                                        for ch in range(0x21, 0x3D)))
            self.schedule(dwell * 28, ed_done)
            return
        pans = [self.meter.cfg] + self.neighbours
        for pan in pans:
            idx = pan.channel - 0x21
            if not mask_v & (1 << idx) or self.f.link_down:
                continue
            if mode == "2" and self.f.strict_pairing and self.regs["S0A"] != pan.rbid[-8:]:
                continue

            def beacon(pan=pan, gen=gen, mode=mode):
                if self.gen != gen:
                    return
                self.event(0x20, self.own_ip)
                self._line("EPANDESC")
                self._line(f"  Channel:{pan.channel:02X}")
                self._line(f"  Channel Page:{self.p.channel_page}")
                self._line(f"  Pan ID:{pan.pan_id:04X}")
                self._line(f"  Addr:{pan.mac}")
                self._line(f"  LQI:{pan.lqi:02X}")
                if self.p.family == "C":
                    self._line("  Side:0")
                if mode == "2":
                    self._line(f"  PairID:{pan.rbid[-8:]}")
            self.schedule(dwell * (idx + 1), beacon)

        def done(gen=gen):
            if self.gen == gen:
                self.event(0x22, self.own_ip)
        self.schedule(dwell * 28 + 0.001, done)

    def cmd_skll64(self, args):
        _arity(args, 1)
        if not _hex(args[0], 16):
            raise _Fail(6)
        self._line(link_local_from_mac(args[0]))

    def cmd_skaddnbr(self, args):
        _arity(args, 2)
        self._ok()

    def cmd_skudpport(self, args):
        _arity(args, 2)
        self._ok()

    def cmd_sktable(self, args):
        _arity(args, 1)
        if args[0] == "1":
            self._line("EADDR")
            self._line(self.own_ip)
        elif args[0] == "2":
            self._line("ENEIGHBOR")
            if self.session:
                self._line(f"{self.meter_ip} {self.meter.cfg.mac} FFFF")
        elif args[0].upper() == "E":
            self._line("EPORT")
            for port in ("3610", "716", "0", "0", "0", "0"):
                self._line(port)
            if self.p.family == "A":
                self.out(b"\r\n")
                for port in ("3610", "0", "0", "0"):
                    self._line(port)
        else:
            raise _Fail(6)
        self._ok()

    def cmd_skjoin(self, args):
        _arity(args, 1)
        try:
            target = normalize_ipaddr(args[0])
        except ValueError:
            raise _Fail(6) from None
        if self.session or self.joining:
            raise _Fail(10)
        self._ok()
        self._start_join(target)

    def cmd_skrejoin(self, args):
        _arity(args, 0)
        if not self.session:
            raise _Fail(10)
        self._ok()
        self.session = False
        self._start_join(self.meter_ip)

    def cmd_skterm(self, args):
        _arity(args, 0)
        if not self.session:
            raise _Fail(10)
        self._ok()
        self.session = False
        self.gen += 1
        gen = self.gen
        self.schedule(0.2, lambda: self.gen == gen and self.event(0x27, self.meter_ip))

    def cmd_ropt(self, args):
        if self.p.ropt_unsupported:
            raise _Fail(4)
        _arity(args, 0)
        self._ok("01" if self.hex_output else "00", cr_only=True)

    def cmd_wopt(self, args):
        if self.p.ropt_unsupported:
            raise _Fail(4)
        _arity(args, 1)
        if not _hex(args[0], 2):
            raise _Fail(6)
        if self.wopt_writes >= self.p.wopt_write_budget:
            raise _Fail(10)
        self.wopt_writes += 1
        self.hex_output = bool(int(args[0], 16) & 1)
        self._ok(cr_only=True)

    def cmd_ruart(self, args):
        _arity(args, 0)
        self._ok("00", cr_only=True)

    def cmd_wuart(self, args):
        raise _Fail(10)          # the simulator refuses to change its (fake) baud rate

    # -- PANA -----------------------------------------------------------------------------

    def _start_join(self, target: str) -> None:
        self.joining = True
        self.stats["joins"] += 1
        gen = self.gen
        cfg = self.meter.cfg
        creds = (self.rbid == cfg.rbid and self.pwd == cfg.password and target == self.meter_ip)
        radio = (int(self.regs["S02"], 16) == cfg.channel and int(self.regs["S03"], 16) == cfg.pan_id)
        if not radio:
            self.schedule(self.t.join_timeout, lambda: self._join_result(gen, False))
            return
        for i in range(self.rng.randint(2, 4)):
            def noise(i=i):
                if self.gen != gen:
                    return
                self.event(0x21, self.meter_ip, 0x00)
                if not self.f.link_down:
                    self.erxudp(self.meter_ip, self.own_ip, 716, 716, cfg.mac, 0, bytes(88))
            self.schedule(self.t.join_time * (i + 1) / 6, noise)
        ok = creds and not self.f.link_down
        delay = self.t.join_time if ok else self.t.join_fail_time
        self.schedule(delay, lambda: self._join_result(gen, ok))

    def _join_result(self, gen: int, ok: bool) -> None:
        if self.gen != gen:
            return
        self.joining = False
        if not ok or self.f.link_down:
            self.event(0x24, self.meter_ip)
            return
        self.session = True
        self.gen += 1
        gen = self.gen
        self.event(0x25, self.meter_ip)
        if self.rng.random() < self.f.d5_inf_prob:
            self.schedule(self.rng.uniform(*self.t.d5_delay), lambda: self.gen == gen and self.erxudp(
                self.meter_ip, MULTICAST, 3610, 3610, self.meter.cfg.mac, 1,
                self.meter.instance_list().encode()))
        self.schedule(self.t.session_lifetime, lambda: self._expire(gen), scaled=False)

    def _expire(self, gen: int) -> None:
        if self.gen != gen or not self.session:
            return
        self.expire_session()

    # -- faults (called by the runtime) -----------------------------------------------------------

    def expire_session(self) -> None:
        """Session lifetime expiry: EVENT 29, then re-auth (EVENT 25) or EVENT 24."""
        if not self.session:
            return
        self.session = False
        self.gen += 1
        gen = self.gen
        self.event(0x29, self.meter_ip)

        def reauth():
            if self.gen != gen:
                return
            if self.f.reauth_fail or self.regs["S17"] != "1" or self.f.link_down:
                self.event(0x24, self.meter_ip)
                return
            self._join_result(gen, True)
        self.schedule(self.t.reauth_time, reauth)

    def terminate_session(self) -> None:
        """The meter ends the session: EVENT 26."""
        if not self.session:
            return
        self.session = False
        self.gen += 1
        self.event(0x26, self.meter_ip)

    def garbage(self, raw: bytes) -> None:
        self.out(raw)

    def tx_limit(self, on: bool) -> None:
        self.f.tx_limited = on
        self.regs["SFB"] = "1" if on else "0"
        self.event(0x32 if on else 0x33)

    def tick(self) -> None:
        """Called by the runtime: emits the 30-minute notification when a boundary passes."""
        from ..meter import half_hour_floor
        boundary = half_hour_floor(self.meter.now())
        if self.last_boundary is None:
            self.last_boundary = boundary
            return
        if boundary == self.last_boundary:
            return
        self.last_boundary = boundary
        if not self.session:
            return
        gen = self.gen
        self.schedule(self.rng.uniform(*self.t.notify_delay), lambda: self._notify(gen, retry=0))

    def _notify(self, gen: int, retry: int, tid: Optional[int] = None) -> None:
        if self.gen != gen or not self.session or self.f.link_down:
            return
        if tid is None:
            self._meter_tid = (self._meter_tid + 1) & 0xFFFF
            tid = self._meter_tid
        frame = self.meter.notification(tid)
        self.stats["notifications"] += 1
        self.erxudp(self.meter_ip, self.own_ip, 3610, 3610, self.meter.cfg.mac, 1, frame.encode())
        if frame.esv == el.Esv.INFC:
            self._pending_infc[tid] = gen
            if retry < self.meter.cfg.infc_retry:
                def again():
                    if tid in self._pending_infc:
                        self._notify(gen, retry + 1, tid)
                self.schedule(self.t.infc_retry_after, again, scaled=False)

    # -- SKSENDTO ------------------------------------------------------------------------------

    def _finish_sendto(self, tokens, payload: bytes) -> None:
        if tokens is None:
            self._fail(5)
            return
        self.stats["sendto"] += 1
        handle, addr, port, sec = tokens[1], tokens[2], tokens[3], tokens[4]
        try:
            dest = normalize_ipaddr(addr)
            port_v = int(port, 16)
        except ValueError:
            self._fail(6)
            return
        if handle not in "123456" or len(handle) != 1 or sec not in ("0", "1", "2"):
            self._fail(6)
            return
        if self.p.family == "C" and tokens[5] not in ("0", "1"):
            self._fail(6)
            return
        if self.f.tx_limited:
            self._fail(10)
            return
        if sec == "1" and not self.session:
            self._ok()              # accepted, nothing transmitted (§1.7.11, 7.3)
            return
        if self.p.sendto_leading_crlf:
            self.out(b"\r\n")
        if self.p.event21_ns_first and self.stats["sendto"] == 1:
            self.event(0x21, dest, 0x02)
            self.event(0x02, dest)
        delivered = not self.f.link_down and dest == self.meter_ip
        self.event(0x21, dest, 0x00 if delivered else 0x01)
        self._ok()
        if not delivered or port_v != 3610:
            return
        if sec == "0":
            return                  # the meter accepts ECHONET Lite only encrypted (§7.5)
        if self.rng.random() < self.f.loss_rate:
            return
        try:
            frame = el.decode(payload)
        except FrameError:
            return
        if frame.esv == el.Esv.INFC_RES:
            if self._pending_infc.pop(frame.tid, None) is not None:
                self.stats["infc_res"] += 1
            return
        for reply in self.meter.handle(frame):
            self._send_reply(reply)

    def _send_reply(self, reply: el.Frame) -> None:
        if self.f.drop_replies > 0:
            self.f.drop_replies -= 1
            return
        if self.rng.random() < self.f.reply_loss_rate:
            return
        delay = self.rng.uniform(*self.t.reply_latency)
        if self.f.late_replies > 0:
            self.f.late_replies -= 1
            delay = self.t.late_reply_delay
            scaled = False
        else:
            scaled = True
        gen = self.gen
        data = reply.encode()
        copies = 2 if self.rng.random() < self.f.duplicate_rate else 1

        def deliver():
            if self.gen != gen or not self.session or self.f.link_down:
                return
            self.stats["replies"] += 1
            for _ in range(copies):
                self.erxudp(self.meter_ip, self.own_ip, 3610, 3610, self.meter.cfg.mac, 1, data)
        self.schedule(delay, deliver, scaled=scaled)


class _Fail(Exception):
    def __init__(self, code: int):
        self.code = code


def _arity(args, n: int) -> None:
    if len(args) != n or any(a == "" for a in args):
        raise _Fail(5)


def _hex(text: str, n: Optional[int] = None) -> bool:
    return bool(text) and (n is None or len(text) == n) and all(
        c in "0123456789ABCDEFabcdef" for c in text)
