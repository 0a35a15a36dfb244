"""Files armsd keeps: atomic writes, state cache, pid file, module config store."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from libarms.daemon.modules import ModuleStore
from libarms.daemon.statefile import PidFile, StateCache, atomic_write
from libarms.errors import ConfigError


def test_atomic_write_replaces_content_and_leaves_no_temporary(tmp_path):
    p = tmp_path / "f"
    atomic_write(str(p), b"one")
    atomic_write(str(p), b"two", 0o640)
    assert p.read_bytes() == b"two"
    assert os.listdir(tmp_path) == ["f"]
    assert (os.stat(p).st_mode & 0o777) == 0o640


def test_state_cache_round_trip_and_missing_file(tmp_path):
    cache = StateCache(str(tmp_path / "sub" / "state"))
    assert cache.load() is None
    assert cache.save(b"\x02" + b"\x00" * 100)
    assert cache.load() == b"\x02" + b"\x00" * 100


def test_state_cache_save_error_is_reported_not_raised(tmp_path, caplog):
    (tmp_path / "plainfile").write_bytes(b"")
    assert StateCache(str(tmp_path / "plainfile" / "state")).save(b"x") is False
    assert "cannot save state cache" in caplog.text


def test_pidfile_written_and_removed_and_refuses_a_live_owner(tmp_path):
    p = tmp_path / "armsd.pid"
    pf = PidFile(str(p))
    pf.write()
    assert p.read_text() == f"{os.getpid()}\n"
    pf.remove()
    assert not p.exists()
    p.write_text("1\n")   # pid 1 is always alive
    with pytest.raises(ConfigError, match="another armsd"):
        PidFile(str(p)).write()


def test_pidfile_of_a_dead_process_is_taken_over(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    p = tmp_path / "armsd.pid"
    p.write_text(f"{proc.pid}\n")
    PidFile(str(p)).write()
    assert p.read_text() == f"{os.getpid()}\n"


def test_module_store_swaps_running_backup_candidate(tmp_path):
    st = ModuleStore(str(tmp_path / "work"))
    st.prepare()
    st.install(st.new_tmp(b"v1"), "running", 7)
    st.copy("running", "backup", 7)
    st.install(st.new_tmp(b"v2"), "candidate", 7)
    st.copy("running", "backup", 7)
    st.install(st.path("candidate", 7), "running", 7)
    assert st.read("running", 7) == b"v2" and st.read("backup", 7) == b"v1"
    assert not st.exists("candidate", 7)
    st.set_meta(7, "2.0", "info")
    assert ModuleStore(str(tmp_path / "work"))._load_meta() == {7: {"version": "2.0",
                                                                    "info": "info"}}
    assert st.module_ids() == [7]
    st.remove(7)
    assert st.module_ids() == [] and not st.exists("backup", 7)


def test_prepare_removes_temporaries_left_by_a_killed_run(tmp_path):
    st = ModuleStore(str(tmp_path))
    st.prepare()
    left = st.new_tmp(b"half")
    (tmp_path / "running-config" / ".3.tmp.999").write_bytes(b"x")
    st2 = ModuleStore(str(tmp_path))
    st2.prepare()
    assert not os.path.exists(left)
    assert os.listdir(tmp_path / "running-config") == []


WRITER = textwrap.dedent("""
    import sys
    from libarms.daemon.modules import ModuleStore
    st = ModuleStore(sys.argv[1])
    st.prepare()
    versions = [bytes([65 + i]) * (300_000 + i) for i in range(2)]
    i = 0
    while True:
        data = versions[i % 2]
        st.install(st.new_tmp(data), "candidate", 1)
        st.copy("running", "backup", 1)
        st.install(st.path("candidate", 1), "running", 1)
        i += 1
        print(i, flush=True)
""")


@pytest.mark.parametrize("kill_after", [1, 3, 7, 12])
def test_sigkill_during_config_swaps_leaves_old_or_new_never_half(tmp_path, kill_after):
    versions = [bytes([65 + i]) * (300_000 + i) for i in range(2)]
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)],
                            stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(kill_after):
            assert proc.stdout.readline(), "writer died"
        proc.send_signal(signal.SIGKILL)   # somewhere inside the next round
    finally:
        proc.wait(timeout=30)
        proc.stdout.close()
    st = ModuleStore(str(tmp_path))
    st.prepare()
    for kind in ("running", "backup"):
        if st.exists(kind, 1):
            assert st.read(kind, 1) in versions, f"{kind} config is half written"
    assert st.read("running", 1) in versions


def test_a_second_armsd_on_the_same_work_directory_is_refused(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        from libarms.daemon.modules import ModuleStore
        ModuleStore({str(tmp_path)!r}).prepare()
        print("locked", flush=True)
        sys.stdin.read()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OSError, match=f"another armsd \\(pid {holder.pid}\\)"):
            ModuleStore(str(tmp_path)).prepare()
    finally:
        holder.stdin.close()
        holder.wait(30)
        holder.stdout.close()
    ModuleStore(str(tmp_path)).prepare()       # free again once the holder is gone


def test_background_state_save_lands_before_a_later_save_and_wait_reports_it(tmp_path):
    cache = StateCache(str(tmp_path / "state"))
    cache.save_in_background(b"first" * 1000)
    assert cache.save(b"second")                  # waits for the first write: order kept
    assert cache.load() == b"second"
    cache.save_in_background(b"third")
    assert cache.wait(30)
    assert cache.load() == b"third"
    assert sorted(os.listdir(tmp_path)) == ["state"]
