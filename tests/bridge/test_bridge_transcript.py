"""broute.md Appendix A (family A, hex output) replayed byte for byte over a real pty.

A scripted module sits on the master side of a pseudo-terminal: it reads exactly the bytes the
bridge must write at each step (compared byte for byte) and answers with the transcript's lines.
The bridge runs with ``reset_on_start = no`` (the transcript starts from a fresh power-up and has
no SKRESET) and its default hex output mode.
"""

from __future__ import annotations

import datetime as dt
import os
import select
import threading
import time
import tty
from decimal import Decimal

from bridge import meter as m
from bridge.echonet import Esv
from bridge.session import Session, State
from bridge_testlib import fast_config

M = "FE80:0000:0000:0000:C2F9:4500:AABB:CCDD"
O = "FE80:0000:0000:0000:021D:1290:1234:5678"
RX = f"ERXUDP {M} {O} 0E1A 0E1A C0F94500AABBCCDD 1 "


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


# ("host", bytes the bridge must write) / ("module", bytes the module writes)
TRANSCRIPT = [
    ("host", b"\r\n"),
    ("host", b"SKVER\r\n"),
    ("module", b"SKVER\r\nEVER 1.2.10\r\nOK\r\n"),
    ("host", b"SKSREG SFE 0\r\n"),
    ("module", b"SKSREG SFE 0\r\nOK\r\n"),
    ("host", b"SKINFO\r\n"),
    ("module", f"EINFO {O} 001D129012345678 21 FFFF FFFE\r\nOK\r\n".encode()),
    ("host", b"ROPT\r"),
    ("module", b"OK 01\r"),
    ("host", b"SKSETPWD C 0A1B2C3D4E5F\r\n"),
    ("module", b"OK\r\n"),
    ("host", b"SKSETRBID 0123456789ABCDEF0123456789ABCDEF\r\n"),
    ("module", b"OK\r\n"),
    ("host", b"SKSCAN 2 FFFFFFFF 6\r\n"),
    ("module", (f"OK\r\nEVENT 20 {O}\r\nEPANDESC\r\n  Channel:3B\r\n  Channel Page:09\r\n"
                f"  Pan ID:1A2B\r\n  Addr:C0F94500AABBCCDD\r\n  LQI:8C\r\n  PairID:89ABCDEF\r\n"
                f"EVENT 22 {O}\r\n").encode()),
    ("host", b"SKSREG S2 3B\r\n"),
    ("module", b"OK\r\n"),
    ("host", b"SKSREG S3 1A2B\r\n"),
    ("module", b"OK\r\n"),
    ("host", f"SKJOIN {M}\r\n".encode()),
    ("module", (f"OK\r\nEVENT 21 {M} 00\r\n"
                f"ERXUDP {M} {O} 02CC 02CC C0F94500AABBCCDD 0 0058 {'00' * 88}\r\n"
                f"EVENT 21 {M} 00\r\nEVENT 25 {M}\r\n"
                f"ERXUDP {M} FF02:0000:0000:0000:0000:0000:0000:0001 0E1A 0E1A C0F94500AABBCCDD 1 "
                f"0012 108100000EF0010EF0017301D50401028801\r\n").encode()),
    ("host", f"SKSENDTO 1 {M} 0E1A 1 0014 ".encode()
     + h("10 81 00 01 05 FF 01 02 88 01 62 04 82 00 9D 00 9E 00 9F 00")),
    ("module", (f"EVENT 21 {M} 00\r\nOK\r\n{RX}0031 1081000102880105FF0172048204000046009D04038081"
                "889E040381E5ED9F111941414160404000624300414040430202\r\n").encode()),
    ("host", f"SKSENDTO 1 {M} 0E1A 1 0018 ".encode()
     + h("10 81 00 02 05 FF 01 02 88 01 62 06 8D 00 D3 00 D7 00 E1 00 EA 00 EB 00")),
    ("module", (f"EVENT 21 {M} 00\r\nOK\r\n{RX}0040 1081000202880105FF0172068D0C46323447333636353035"
                "0000D30400000001D70106E10101EA0B07E80A01111E000000FE6AEB0B07E80A01111E0000000009"
                "\r\n").encode()),
    ("host", f"SKSENDTO 1 {M} 0E1A 1 0010 ".encode()
     + h("10 81 00 03 05 FF 01 02 88 01 62 02 E7 00 E8 00")),
    ("module", (f"EVENT 21 {M} 00\r\nOK\r\n{RX}0018 1081000302880105FF017202E704000001F4E804001E0032"
                "\r\n").encode()),
    ("module", (f"{RX}0026 1081A00102880105FF017402EA0B07E80A011200000000FE73EB0B07E80A01120000000000"
                "09\r\n").encode()),
    ("host", f"SKSENDTO 1 {M} 0E1A 1 0010 ".encode()
     + h("10 81 A0 01 05 FF 01 02 88 01 7A 02 EA 00 EB 00")),
    ("module", f"EVENT 21 {M} 00\r\nOK\r\n".encode()),
]


class ScriptedModule(threading.Thread):
    def __init__(self, master: int, script):
        super().__init__(daemon=True)
        self.master = master
        self.script = script
        self.error = None
        self.done = threading.Event()

    def run(self):
        try:
            for i, (who, data) in enumerate(self.script):
                if who == "module":
                    os.write(self.master, data)
                    continue
                got = b""
                deadline = time.monotonic() + 10
                while len(got) < len(data):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise AssertionError(f"step {i}: expected {data!r}, got only {got!r}")
                    r, _, _ = select.select([self.master], [], [], remaining)
                    if r:
                        got += os.read(self.master, len(data) - len(got))
                if got != data:
                    raise AssertionError(f"step {i}: expected {data!r}, got {got!r}")
        except Exception as exc:          # reported to the test thread
            self.error = exc
        finally:
            self.done.set()


def test_appendix_a_transcript_is_reproduced_byte_for_byte(tmp_path):
    master, slave = os.openpty()
    tty.setraw(slave)
    link = tmp_path / "wisun-a"
    os.symlink(os.ttyname(slave), link)
    peer = ScriptedModule(master, TRANSCRIPT)
    peer.start()
    notes = []
    cfg = fast_config(str(link), tmp_path, reset_on_start=False, output_mode="hex",
                      scan_durations=(6,), instance_list_wait=5.0, request_timeout=5.0)
    session = Session(cfg, on_notification=notes.append)
    try:
        session.connect()
        assert session.state is State.JOINED and session.dialect.family == "A"
        assert session.instance_list_seen
        assert session.meter.scaling == m.Scaling(Decimal("0.1"), 1, 6)
        assert session.meter.serial == "F24G366505"
        reading = session.get([m.POWER, m.CURRENTS])
        assert reading.esv == Esv.GET_RES and reading.tid == 3
        assert m.decode_power(reading.get(m.POWER)) == 500
        assert m.decode_currents(reading.get(m.CURRENTS)) == (Decimal("3.0"), Decimal("5.0"))
        session.pump(10, lambda r: session.metrics["infc_answered"] == 1)
        assert peer.done.wait(10)
        assert peer.error is None, peer.error
        assert len(notes) == 1 and notes[0].tid == 0xA001
        when, raw = m.decode_fixed_time(notes[0].get(m.FIXED_NORMAL))
        assert when == dt.datetime(2024, 10, 1, 18, 0, tzinfo=m.JST)
        assert session.meter.scaling.kwh(raw) == Decimal("6513.9")
    finally:
        session.close()
        os.close(master)
        os.close(slave)
