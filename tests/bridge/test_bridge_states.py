"""The supervisor's state table (broute.md §2.6), the simulator CLI and PAN selection."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from bridge import meter as m
from bridge.session import ANY, LADDER, TRANSITIONS, Ev, State, next_state
from bridge.sim import Faults, MeterConfig
from bridge_testlib import wait_for


def test_every_state_has_a_row_and_every_target_is_a_state():
    assert set(TRANSITIONS) == set(State)
    for row in TRANSITIONS.values():
        assert all(isinstance(e, Ev) and isinstance(s, State) for e, s in row.items())


def test_table_matches_the_spec_diagram():
    S, E = State, Ev
    path = [(S.CLOSED, E.OPENED, S.PORT_OPEN), (S.PORT_OPEN, E.INIT_OK, S.IDLE),
            (S.IDLE, E.PAN_FOUND, S.PAN_KNOWN), (S.PAN_KNOWN, E.JOIN_SENT, S.JOINING),
            (S.JOINING, E.AUTH_OK, S.JOINED), (S.JOINED, E.EXPIRED, S.REAUTH),
            (S.REAUTH, E.AUTH_OK, S.JOINED), (S.JOINING, E.AUTH_FAIL, S.BACKOFF),
            (S.JOINING, E.JOIN_TIMEOUT, S.BACKOFF), (S.REAUTH, E.REAUTH_TIMEOUT, S.BACKOFF),
            (S.JOINED, E.PEER_TERMINATED, S.BACKOFF), (S.JOINED, E.TERMINATED, S.BACKOFF),
            (S.JOINED, E.REQUEST_FAILURES, S.BACKOFF), (S.JOINED, E.TX_LIMIT, S.THROTTLED),
            (S.THROTTLED, E.TX_RESUME, S.JOINED)]
    for state, event, target in path:
        assert next_state(state, event) is target, (state, event)
    for state in State:
        assert next_state(state, Ev.IO_ERROR) is S.CLOSED
    assert next_state(S.IDLE, Ev.EXPIRED) is None            # meaningless events are ignored
    assert LADDER == ("rejoin", "terminate+rejoin", "rescan", "reset", "reopen")
    assert Ev.IO_ERROR in ANY


def test_scan_prefers_our_pairing_id_over_a_stronger_neighbour(make_sim, make_session):
    neighbour = MeterConfig(mac="C0F94500AABB0001", channel=0x21, pan_id=0x7777, lqi=0xF0,
                            rbid="FFFFFFFFFFFFFFFFFFFFFFFF00000000")
    sim = make_sim("bp35c2", faults=Faults(strict_pairing=False), neighbours=[neighbour])
    s = make_session(sim)
    s.connect()
    assert (s.pan.channel, s.pan.pan_id, s.pan.addr) == (0x3B, 0x1A2B, "C0F94500AABBCCDD")
    assert s.get([m.POWER]).get(m.POWER) is not None


def test_broute_sim_command_runs_a_module_and_takes_fault_commands(tmp_path, make_session):
    link, ctl = str(tmp_path / "wisun-cli"), str(tmp_path / "ctl.sock")
    proc = subprocess.Popen([sys.executable, "-c",
                             "import sys; from bridge.sim import main; sys.exit(main(sys.argv[1:]))",
                             "--profile", "bp35c2", "--link", link, "--control", ctl,
                             "--time-scale", "0", "--hex"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def control(line):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.settimeout(5)
            c.connect(ctl)
            c.sendall(line.encode())
            return c.recv(4096).decode().strip()

    try:
        assert wait_for(lambda: os.path.exists(ctl) and os.path.exists(link), 15)

        class Sim:                       # what make_session needs: the device path
            path = link
        s = make_session(Sim)
        s.connect()
        assert s.dialect.family == "C" and s.driver.reader.mode == "hex"
        assert control("terminate_session") == "ok"
        assert control("frobnicate").startswith("error unknown command")
        assert "sendto" in control("stats")
        s.pump(5, lambda r: not s.joined)
        s.connect()
        assert s.get([m.POWER]).get(m.POWER) is not None
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


def test_when_the_first_candidate_refuses_the_next_one_is_joined_before_any_rescan(
        make_sim, make_session):
    # A neighbour whose pairing ID collides with ours and is heard louder: it cannot be joined
    # (EVENT 24); the bridge must go on to the next candidate of the same scan.
    twin = MeterConfig(mac="C0F94500AABB0002", channel=0x22, pan_id=0x2222, lqi=0xFF,
                       rbid="FFFFFFFFFFFFFFFFFFFFFFFF89ABCDEF")
    sim = make_sim("bp35a1", neighbours=[twin])
    s = make_session(sim)
    s.connect()
    assert s.pan.addr == "C0F94500AABBCCDD"
    assert s.metrics["rescans"] == 1 and s.metrics["joins"] == 2
