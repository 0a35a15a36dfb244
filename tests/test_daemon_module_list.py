"""armsd's module list (work dir ``modules``): line records, awkward info texts, the JSON file of
earlier releases migrated, a damaged list reported and ignored."""

import json

from libarms.daemon.modules import ModuleStore


def test_module_list_round_trips_tabs_newlines_and_non_ascii_info(tmp_path):
    st = ModuleStore(str(tmp_path))
    st.prepare()
    st.set_meta(3, "1.0\tbeta", "line one\nline two \\ ü")
    st.set_meta(12, "", "")
    again = ModuleStore(str(tmp_path))
    again.prepare()
    assert again.meta == {3: {"version": "1.0\tbeta", "info": "line one\nline two \\ ü"},
                          12: {"version": "", "info": ""}}
    assert (tmp_path / "modules").read_bytes().count(b"\n") == 2


def test_module_list_of_an_earlier_release_is_read_then_replaced(tmp_path):
    (tmp_path / "modules.json").write_text(json.dumps({"5": {"version": "2", "info": "old"}}))
    st = ModuleStore(str(tmp_path))
    st.prepare()
    assert st.meta == {5: {"version": "2", "info": "old"}}
    st.set_meta(6, "1", "new")
    assert not (tmp_path / "modules.json").exists()
    again = ModuleStore(str(tmp_path))
    again.prepare()
    assert sorted(again.meta) == [5, 6]


def test_damaged_module_list_is_logged_and_ignored(tmp_path, caplog):
    (tmp_path / "modules").write_bytes(b"5\t2\tbad\\escape\n")
    st = ModuleStore(str(tmp_path))
    st.prepare()
    assert st.meta == {}
    assert any("unreadable" in r.getMessage() for r in caplog.records)


def test_deferred_directory_flushes_are_collected_then_handed_over(tmp_path, monkeypatch):
    import libarms.daemon.modules as modules
    flushed = []
    monkeypatch.setattr(modules, "fsync_dir", flushed.append)
    st = ModuleStore(str(tmp_path))
    st.prepare()
    st.defer_dir_syncs()
    st.install(st.new_tmp(b"cfg"), "running", 4)
    st.copy("running", "backup", 4)
    st.set_meta(4, "1", "i")
    assert flushed == []                                # nothing flushed during the pull
    dirs = st.end_deferral()
    assert dirs == sorted({str(tmp_path), str(tmp_path / "running-config"),
                           str(tmp_path / "backup-config")})
    modules.flush_dirs(dirs)
    assert flushed == dirs
    st.install(st.new_tmp(b"cfg2"), "candidate", 4)     # after the pull: flushed at once
    assert flushed[-1] == str(tmp_path / "candidate-config")
    assert st.read("running", 4) == b"cfg" and st.read("backup", 4) == b"cfg"
