"""Hook runner: real subprocesses, arguments, environment, timeouts, stderr logging, secrets."""

import logging
import os

from conftest_daemon import DISTID, hooks  # noqa: F401  (fixture)

from libarms.daemon.hooks import HookRunner, Redactor, printable


def test_hook_gets_exact_arguments_and_distribution_id(hooks):
    path = hooks.make("h", "exit 0")
    res = HookRunner(DISTID).run("script-x", path, ["a b", "", "c;d"])
    assert res.ok and res.returncode == 0
    assert hooks.calls("h") == [f"[a b][][c;d] env={DISTID}"]


def test_nonzero_exit_is_failed_with_its_code(hooks):
    res = HookRunner(DISTID).run("script-x", hooks.make("h", "exit 130"))
    assert res.status == "failed" and res.returncode == 130


def test_missing_hook_counts_as_exit_127(tmp_path):
    res = HookRunner(DISTID).run("script-x", str(tmp_path / "absent"))
    assert (res.status, res.returncode) == ("failed", 127)


def test_stdout_is_captured_when_asked(hooks):
    res = HookRunner(DISTID).run("script-x", hooks.make("h", "echo hello; echo world"),
                                 capture_stdout=True)
    assert res.stdout == b"hello\nworld\n"


def test_hanging_hook_is_terminated_after_the_timeout(hooks):
    # The hook ignores nothing: SIGTERM ends it; its child sleep is in the same group.
    pidfile = os.path.join(hooks.dir, "child.pid")
    path = hooks.make("h", f"sleep 60 & echo $! > '{pidfile}'; wait")
    res = HookRunner(DISTID, timeout=0.5, kill_grace=2).run("script-x", path)
    assert res.status == "timeout"
    child = int(open(pidfile).read())
    _wait_gone(child)


def test_hook_ignoring_sigterm_is_killed(hooks):
    path = hooks.make("h", "trap '' TERM; while :; do sleep 0.1; done")
    res = HookRunner(DISTID, timeout=0.3, kill_grace=0.3).run("script-x", path)
    assert res.status == "timeout" and res.returncode == -9


def test_background_child_holding_stdout_does_not_block_armsd(hooks):
    # A line hook may start a daemon (pppd) that inherits stdout; armsd must not wait for it.
    pidfile = os.path.join(hooks.dir, "bg.pid")
    path = hooks.make("h", f"sleep 30 & echo $! > '{pidfile}'; exit 129")
    res = HookRunner(DISTID, timeout=20).run("script-x", path)
    child = int(open(pidfile).read())
    try:
        assert res.returncode == 129
        os.kill(child, 0)      # still running: armsd did not wait for it to close stdout
    finally:
        os.kill(child, 9)


def test_stderr_lines_are_logged_as_warnings_without_secrets(hooks, caplog):
    path = hooks.make("h", "echo \"bad thing with $2\" >&2; printf 'x\\001y\\n' >&2; exit 1")
    caplog.set_level(logging.DEBUG, logger="libarms.daemon.hooks")
    res = HookRunner(DISTID).run("script-line-ctrl", path, ["user", "pa55word"],
                                 secrets=["pa55word"])
    assert res.returncode == 1
    text = caplog.text
    assert "pa55word" not in text
    assert "script unhandled error: bad thing with ***" in text
    assert "x y" in text  # control character shown as a space


def test_stderr_is_capped_at_1000_bytes_per_run(hooks, caplog):
    path = hooks.make("h", "i=0; while [ $i -lt 300 ]; do echo 'line-of-some-text' >&2; "
                           "i=$((i+1)); done")
    caplog.set_level(logging.WARNING, logger="libarms.daemon.hooks")
    HookRunner(DISTID).run("script-x", path)
    logged = [r for r in caplog.records if "script unhandled error" in r.getMessage()]
    assert 0 < len(logged) <= 1000 // len("line-of-some-text\n") + 1


def test_large_stdout_is_bounded_and_does_not_deadlock(hooks):
    path = hooks.make("h", "head -c 500000 /dev/zero; exit 0")
    res = HookRunner(DISTID).run("script-x", path, capture_stdout=True)
    assert res.ok and len(res.stdout) == 64 * 1024


def test_redactor_hides_registered_secrets_longest_first():
    r = Redactor(["secret", "secret-longer", "ab"])
    assert r("x secret-longer y secret z ab") == "x *** y *** z ab"


def test_printable_replaces_control_bytes():
    assert printable(b"a\x00b\xffc\t") == "a b c"


def _wait_gone(pid, limit=10.0):
    """Wait (bounded) until ``pid`` has exited; a pidfd becomes readable when it does."""
    import select
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        ready, _, _ = select.select([fd], [], [], limit)
        assert ready, f"process {pid} still alive after {limit} s"
    finally:
        os.close(fd)


def test_hook_environment_has_the_key_and_extra_variables(hooks):
    out = os.path.join(hooks.dir, "env")
    path = hooks.make("h", f'echo "$ARMSD_HOOK $ARMSD_WORK_DIR" > "{out}"')
    HookRunner(DISTID, extra_env={"ARMSD_WORK_DIR": "/var/lib/armsd"}).run("script-stop", path)
    assert open(out).read() == "script-stop /var/lib/armsd\n"
