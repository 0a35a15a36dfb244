"""armsd's launch (issue 5: launch -> PUSH_WAIT): what the main thread must import before the
first byte goes to the LS. The XML parser side (ElementTree, expat, defusedxml) is needed only
once an answer arrives, so the daemon's and the agent's modules leave it unloaded and armsd
imports it (then the push phase) while the first exchange waits for its answer
(``transport.https.while_waiting``). Checked in a fresh ``python -S`` as on a device."""

import os
import socket
import subprocess
import sys
import sysconfig

from libarms.transport import https

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARSER_MODULES = ("xml.etree", "xml.parsers", "pyexpat", "defusedxml", "_elementtree")


def run_fresh(code: str) -> subprocess.CompletedProcess:
    paths = sysconfig.get_paths()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        dict.fromkeys([ROOT, paths["purelib"], paths["platlib"]])))
    return subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                          env=env, timeout=60)


def test_daemon_and_agent_modules_leave_the_xml_parser_unloaded():
    r = run_fresh("import sys\nimport libarms.daemon.main, libarms.agent, libarms.protocol\n"
                  "print(' '.join(sys.modules))")
    assert r.returncode == 0, r.stderr
    mods = set(r.stdout.split())
    assert "libarms.protocol.xmlutil" in mods and "ssl" in mods     # the import was real
    assert sorted(m for m in mods if m.startswith(PARSER_MODULES)) == []


def test_first_parse_loads_the_parser_and_still_refuses_a_dtd_and_entities():
    code = (
        "import sys\n"
        "from libarms.protocol.xmlutil import parse_document\n"
        "from libarms.errors import ProtocolError\n"
        "print(parse_document(b'<arms-message><a>1</a></arms-message>').find('a').text)\n"
        "print('defusedxml.ElementTree' in sys.modules)\n"
        "for doc in (b'<!DOCTYPE x [<!ENTITY e \"boom\">]><x>&e;</x>', b'<x><y></x>'):\n"
        "    try:\n"
        "        parse_document(doc)\n"
        "    except ProtocolError as e:\n"
        "        print('refused:', e)\n")
    r = run_fresh(code)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "1" and lines[1] == "True"
    assert "DTD" in lines[2] or "entity" in lines[2]
    assert lines[3].startswith("refused:") and "well-formed" in lines[3]


ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def test_work_queued_for_the_wait_runs_once_after_the_request_and_before_the_answer_is_read():
    a, b = socket.socketpair()
    seen = []

    def work():
        b.settimeout(10)
        seen.append(b.recv(100))          # the request is out already
        b.sendall(ANSWER)                 # the answer comes only now: exchange reads it after

    try:
        https.while_waiting(work)
        https.while_waiting(work)         # queued once
        resp = https.exchange(a, b"POST / HTTP/1.1\r\n\r\n", timeout=10)
        assert seen == [b"POST / HTTP/1.1\r\n\r\n"]
        assert resp.status == 200 and resp.body == b"ok"
        b.sendall(ANSWER)
        https.exchange(a, b"GET", timeout=10)   # a second exchange: nothing left to run
        assert len(seen) == 1
    finally:
        a.close()
        b.close()


def test_a_failing_waiting_work_does_not_fail_the_exchange():
    a, b = socket.socketpair()

    def work():
        b.sendall(ANSWER)
        raise RuntimeError("import failed")

    try:
        https.while_waiting(work)
        assert https.exchange(a, b"GET", timeout=10).status == 200
    finally:
        a.close()
        b.close()
