"""armsd as a command: versions, config errors, exit codes, heartbeat debug mode, light imports."""

import subprocess
import sys

from conftest_daemon import DISTID

ARMSD = [sys.executable, "-m", "libarms.daemon.main"]


def run(args, timeout=60):
    return subprocess.run(ARMSD + args, capture_output=True, text=True, timeout=timeout)


def test_version_prints_both_versions_and_exits_0():
    r = run(["-V"])
    assert r.returncode == 0 and "armsd version" in r.stdout and "libarms" in r.stdout


def test_help_documents_the_exit_codes():
    r = run(["--help"])
    assert r.returncode == 0
    for words in ("3 server said stop", "4 reboot requested", "5 boot fail"):
        assert words in r.stdout.replace("\n", " ").replace("  ", " ")


def test_bad_option_exits_2():
    assert run(["--no-such-option"]).returncode == 2


def test_bad_config_value_exits_1_with_file_and_line(tmp_path):
    conf = tmp_path / "armsd.conf"
    conf.write_text(f"distribution-id: {DISTID}\ntimeout: later\n")
    r = run(["-f", str(conf)])
    assert r.returncode == 1
    assert f"{conf}:2" in r.stderr and "timeout" in r.stderr


def test_missing_root_ca_exits_1_with_an_actionable_message(tmp_path):
    conf = tmp_path / "armsd.conf"
    conf.write_text(f"distribution-id: {DISTID}\npath-work-dir: work\n"
                    "path-state-cache: state\n")
    r = run(["-f", str(conf)])
    assert r.returncode == 1
    assert "path-root-ca" in r.stderr and "ARMS Root CA" in r.stderr


def test_missing_distribution_id_exits_1(tmp_path):
    conf = tmp_path / "armsd.conf"
    conf.write_text("ls-sa-key: x\n")
    r = run(["-f", str(conf)])
    assert r.returncode == 1 and "distribution-id" in r.stderr


def test_heartbeat_debug_mode_prints_collected_statistics(tmp_path):
    conf = tmp_path / "armsd.conf"
    conf.write_text(f"distribution-id: {DISTID}\nhb-traffic-if0: lo\npath-work-dir: work\n")
    r = run(["-f", str(conf), "-H", "--hb-debug-count", "2"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("set_mem_usage(0,") == 2
    assert "set_disk_usage(0," in r.stdout


def test_daemon_module_does_not_import_requests_or_x509():
    code = ("import sys, libarms.daemon.main as m; "
            "print(sorted(k for k in sys.modules if k.split('.')[0] in "
            "('requests', 'cryptography', 'urllib3')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_syslog_gets_one_datagram_per_event_with_daemon_facility(tmp_path):
    import socket
    conf = tmp_path / "armsd.conf"
    conf.write_text(f"distribution-id: {DISTID}\npath-work-dir: work\n")
    sock_path = str(tmp_path / "log.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(30)
    try:
        r = run(["-f", str(conf), "--syslog", "--syslog-socket", sock_path])
        assert r.returncode == 1          # no path-root-ca: reported through syslog
        assert "Traceback" not in r.stderr
        msgs = []
        sock.setblocking(False)
        while True:
            try:
                msgs.append(sock.recv(4096).decode())
            except BlockingIOError:
                break
    finally:
        sock.close()
    # <facility daemon (3) * 8 + severity>: error = 3 -> <27>, info = 6 -> <30>
    assert any(m.startswith("<30>armsd[") and "armsd version" in m for m in msgs)
    assert any(m.startswith("<27>armsd[") and "path-root-ca" in m for m in msgs)
    assert all(f"[{DISTID} INITIAL]" in m for m in msgs)


def test_unusable_work_directory_exits_1_with_its_path(tmp_path):
    (tmp_path / "plainfile").write_text("")
    conf = tmp_path / "armsd.conf"
    conf.write_text(f"distribution-id: {DISTID}\npath-work-dir: plainfile/work\n"
                    f"path-root-ca: {tmp_path / 'ca.pem'}\n")
    r = run(["-f", str(conf)])
    assert r.returncode == 1
    assert "plainfile/work" in r.stderr and "Traceback" not in r.stderr
