"""The pyserial driver against a hand-driven pty: routing, timeouts, failures, exclusivity, masking."""

from __future__ import annotations

import logging
import os
import select
import threading
import time
import tty

import pytest

from bridge import sk
from bridge.driver import SkDriver
from bridge.errors import ModuleError, PortGone, RequestTimeout
from bridge_testlib import wait_for

METER = "FE80:0000:0000:0000:C2F9:4500:AABB:CCDD"


@pytest.fixture
def pty_port(tmp_path):
    master, slave = os.openpty()
    tty.setraw(slave)
    link = tmp_path / "tty-drv"
    os.symlink(os.ttyname(slave), link)
    fds = {"master": master, "slave": slave}
    yield str(link), fds
    for fd in fds.values():
        try:
            os.close(fd)
        except OSError:
            pass


def read_line(master: int, timeout: float = 5.0) -> bytes:
    got = b""
    deadline = time.monotonic() + timeout
    while not got.endswith(b"\n"):
        r, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
        if not r:
            break
        got += os.read(master, 1)
    return got


def exchange(d: SkDriver, master: int, line: bytes, reply: bytes, **kw):
    """Run ``d.command(line)`` while playing the module: read the line, write ``reply``."""
    out = {}

    def run():
        try:
            out["result"] = d.command(line, **kw)
        except Exception as exc:          # handed to the test thread
            out["error"] = exc
    t = threading.Thread(target=run)
    t.start()
    assert read_line(master) == line
    os.write(master, reply)
    t.join(5)
    if "error" in out:
        raise out["error"]
    return out["result"]


def opened(port: str) -> SkDriver:
    d = SkDriver(port, drain_time=0.02, command_timeout=1.0)
    d.open()
    return d


def test_events_between_echo_and_ok_go_to_the_event_queue(pty_port):
    port, fds = pty_port
    d = opened(port)
    try:
        assert read_line(fds["master"]) == b"\r\n"          # the drain's bare CR LF
        recs = exchange(d, fds["master"], sk.command("SKSREG", "S2", "3B"),
                        f"SKSREG S2 3B\r\nEVENT 21 {METER} 00\r\nERXUDP {METER} {METER} "
                        f"0E1A 0E1A C0F94500AABBCCDD 1 0002 1081\r\nOK\r\n".encode())
        assert recs == [sk.Ok()]
        assert d.next_event(1) == sk.Event(0x21, METER, None, 0)
        assert isinstance(d.next_event(1), sk.RxUdp)
    finally:
        d.close()


def test_fail_and_timeout_are_typed_and_a_late_answer_does_not_leak(pty_port):
    port, fds = pty_port
    d = opened(port)
    try:
        read_line(fds["master"])
        with pytest.raises(ModuleError) as err:
            exchange(d, fds["master"], sk.command("SKTERM"), b"FAIL ER10\r\n")
        assert err.value.code == 10 and "ER10" in str(err.value)
        with pytest.raises(RequestTimeout, match="no answer"):
            d.command(sk.command("SKVER"), timeout=0.2)
        os.write(fds["master"], b"EVER 1.2.10\r\nOK\r\n")      # the late answer to SKVER...
        assert wait_for(lambda: d._responses.qsize() >= 2, 5)
        assert read_line(fds["master"]) == b"SKVER\r\n"
        recs = exchange(d, fds["master"], sk.command("SKINFO"),
                        f"EINFO {METER} C0F94500AABBCCDD 21 FFFF FFFE\r\nOK\r\n".encode())
        assert [type(x) for x in recs] == [sk.Payload, sk.Ok] and recs[0].name == "EINFO"
    finally:
        d.close()


def test_closed_port_raises_port_gone_for_waiters_and_writers(pty_port):
    port, fds = pty_port
    d = opened(port)
    try:
        os.close(fds.pop("master"))
        with pytest.raises(PortGone):
            for _ in range(50):
                d.next_event(0.1)
        with pytest.raises(PortGone):
            d.command(sk.command("SKVER"))
    finally:
        d.close()


def test_second_opener_of_the_same_port_is_refused(pty_port):
    port, _ = pty_port
    d = opened(port)
    try:
        with pytest.raises(PortGone, match="cannot open"):
            opened(port)
    finally:
        d.close()


def test_credentials_never_reach_the_log(pty_port, caplog):
    port, fds = pty_port
    d = opened(port)
    caplog.set_level(logging.DEBUG, logger="bridge")
    try:
        read_line(fds["master"])
        for line in (sk.command("SKSETPWD", "C", "0A1B2C3D4E5F"),
                     sk.command("SKSETRBID", "0123456789ABCDEF0123456789ABCDEF")):
            exchange(d, fds["master"], line, b"OK\r\n")
        assert "SKSETPWD C ****" in caplog.text
        assert "0A1B2C3D4E5F" not in caplog.text and "0123456789ABCDEF" not in caplog.text
    finally:
        d.close()
