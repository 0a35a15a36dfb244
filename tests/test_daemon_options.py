"""armsd's command line without argparse: the option table and parser in ``libarms.daemon.main``
accept what the argparse parser accepted (GNU getopt forms, long prefixes) and refuse the rest
with exit 2; the parser agrees with ``getopt.gnu_getopt`` on any command line."""

import subprocess
import sys

import getopt

import pytest
from hypothesis import given, settings, strategies as st

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
    (["--syslog=1"], "--syslog must not have an argument"),
    (["-v", "--", "-f"], "unrecognized arguments: -f"),
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


def gnu_getopt_reference(argv):
    shorts = "".join(s + (":" if kind != "flag" else "") for s, _l, _d, kind, _m, _h in OPTIONS if s)
    longs = [lo + ("=" if kind != "flag" else "") for _s, lo, _d, kind, _m, _h in OPTIONS if lo]
    flags = {}
    for s, lo, dest, kind, _m, _h in OPTIONS:
        for f in ((f"-{s}",) if s else ()) + ((f"--{lo}",) if lo else ()):
            flags[f] = (dest, kind)
    try:
        pairs, rest = getopt.gnu_getopt(argv, shorts, longs)
    except getopt.GetoptError as e:
        return ("error", str(e))
    if rest:
        return ("error", "unrecognized arguments: " + " ".join(rest))
    out = {}
    for f, v in pairs:
        dest, kind = flags[f]
        if kind == "int":
            try:
                v = int(v)
            except ValueError:
                return ("error", "int")
        out[dest] = True if kind == "flag" else v
    return ("ok", out)


TOKENS = ["-v", "-vD", "-f", "-fx.conf", "--config", "--config=y", "--conf", "--sys",
          "--syslog", "--syslog=1", "--syslog-s", "-p", "-p7", "7", "x", "--", "-", "-w",
          "--hb-debug", "--hb-debug-c", "-Hd", "-q", "--nope", "--daemon", "-ib"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=6))
def test_parser_agrees_with_gnu_getopt_on_any_command_line(argv):
    want = gnu_getopt_reference(argv)
    try:
        got = parse_args(argv)
    except UsageError as e:
        assert want[0] == "error"
        assert want[1] == "int" and "invalid int value" in str(e) or want[1] == str(e)
        return
    assert want[0] == "ok", want
    default = parse_args([])
    assert {k: v for k, v in vars(got).items() if getattr(default, k) != v} == \
        {k: v for k, v in want[1].items() if getattr(default, k) != v}
