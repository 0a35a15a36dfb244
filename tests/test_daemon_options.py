"""armsd's command line without argparse: the getopt table in ``libarms.daemon.main`` accepts
what the argparse parser accepted (GNU forms, long prefixes) and refuses the rest with exit 2."""

import subprocess
import sys

import pytest

from libarms.daemon.main import OPTIONS, UsageError, help_text, parse_args, usage


def test_defaults_match_the_documented_ones():
    a = parse_args([])
    assert a.config == "/etc/armsd/armsd.conf" and a.syslog_socket == "/dev/log"
    assert a.port is None and a.hb_debug_count == 0
    assert a.daemon is False and a.wait_daemon is False and a.d is False


def test_short_long_attached_and_bundled_forms_all_parse():
    a = parse_args(["-fA.conf", "--work-dir=W", "-p", "10444", "-vD", "--state-file", "S",
                    "--exit-on", "-w", "--syslog", "--syslog-socket", "/tmp/log"])
    assert (a.config, a.work_dir, a.port, a.state_file) == ("A.conf", "W", 10444, "S")
    assert a.verbose and a.foreground and a.exit_on_pull and a.wait_daemon and a.syslog
    assert a.syslog_socket == "/tmp/log"
    b = parse_args(["--config", "B.conf", "-d", "--hb-debug", "--hb-debug-count", "3",
                    "--daemon", "--pidfile=/run/x.pid", "-i", "0001-0000"])
    assert (b.config, b.d, b.hb_debug, b.hb_debug_count, b.daemon) == ("B.conf", True, True, 3, True)
    assert b.pidfile == "/run/x.pid" and b.distribution_id == "0001-0000"


@pytest.mark.parametrize("argv, words", [
    (["--no-such-option"], "--no-such-option not recognized"),
    (["-x"], "-x not recognized"),
    (["-p", "ten"], "argument -p/--port: invalid int value: 'ten'"),
    (["-f"], "-f requires argument"),
    (["--sys"], "not a unique prefix"),
    (["extra"], "unrecognized arguments: extra"),
])
def test_bad_command_lines_are_usage_errors_naming_the_problem(argv, words):
    with pytest.raises(UsageError, match=words.replace("-", r"\-").replace("(", r"\(")):
        parse_args(argv)


def test_help_lists_every_visible_option_and_usage_never_splits_an_option():
    text = help_text(80)
    for short, long, _dest, _kind, metavar, help_ in OPTIONS:
        shown = f"--{long}" if long else f"-{short}"
        assert (shown in text) == (help_ is not None), shown
    assert "--hb-debug-count" not in usage(40)
    for line in usage(40).splitlines():
        assert line.count("[") == line.count("]"), line


def test_usage_error_prints_usage_and_message_and_exits_2():
    r = subprocess.run([sys.executable, "-m", "libarms.daemon.main", "--port", "x"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("usage: armsd [-h]")
    assert r.stderr.rstrip().endswith("armsd: error: argument -p/--port: invalid int value: 'x'")


def test_help_goes_to_stdout_with_exit_0_and_the_width_of_columns():
    r = subprocess.run([sys.executable, "-m", "libarms.daemon.main", "-h"], capture_output=True,
                       text=True, timeout=60, env={"COLUMNS": "60", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0 and r.stderr == ""
    assert max(len(line) for line in r.stdout.splitlines()) <= 58
    assert "-w " in r.stdout and "Exit codes:" in r.stdout
