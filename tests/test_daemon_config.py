"""armsd config file: the §5.3 keys, defaults, our additions, and errors a person can act on."""

import os

import pytest

from libarms import ConfigError, Line, LineType
from libarms.daemon.config import load_config, normalize_distribution_id, parse_config

SAMPLE = os.path.join(os.path.dirname(__file__), "..", "libarms", "daemon", "data",
                      "armsd.conf.sample")


def test_config_reads_armsd_keys_and_trims_names_and_values():
    cfg = parse_config("""
# comment
distribution-id :  1-1234-5678-9abc-def0-1122-3344-5566
ls-sa-key: secret-key
timeout: 7
app-event-interval: 12.5
binary: 1
hb-disk-usage1: /var
hb-traffic-if3: wlan0
hb-dummy: 1
script-command: /usr/libexec/armsd/command
""", base_dir="/etc/armsd")
    assert cfg.distribution_id == "0001-1234-5678-9ABC-DEF0-1122-3344-5566"
    assert cfg.ls_sa_key == "secret-key"
    assert cfg.timeout == 7.0 and cfg.app_event_interval == 12.5
    assert cfg.binary == 1 and cfg.hb_dummy == 1
    assert cfg.hb_disk_usage == ("/", "/var")
    assert cfg.hb_traffic_if == ("eth0", "eth1", "eth2", "wlan0")
    assert cfg.script("script-command") == "/usr/libexec/armsd/command"
    assert cfg.script("script-status") is None


def test_config_defaults_follow_armsd_with_our_file_layout():
    cfg = parse_config("distribution-id: 0001-0000-0000-0000-0000-0000-0000-0001\n")
    assert cfg.timeout == 30 and cfg.app_event_interval == 300 and cfg.binary == 0
    assert cfg.hb_disk_usage == ("/",) and cfg.hb_traffic_if == ("eth0", "eth1", "eth2")
    assert cfg.path_state_cache == "/var/lib/armsd/state"
    assert cfg.path_work_dir == "/var/lib/armsd" and cfg.path_pid == "/run/armsd.pid"
    assert [ln.type for ln in cfg.ls_lines] == [LineType.DHCP, LineType.RA]


def test_relative_paths_are_taken_from_the_config_file_directory(tmp_path):
    p = tmp_path / "armsd.conf"
    p.write_text("distribution-id: 1-2-3-4-5-6-7-8\nscript-stop: hooks/stop\n"
                 "path-state-cache: state\n")
    cfg = load_config(str(p))
    assert cfg.script("script-stop") == str(tmp_path / "hooks" / "stop")
    assert cfg.path_state_cache == str(tmp_path / "state")


def test_unknown_keys_and_lines_without_colon_are_warned_not_fatal():
    cfg = parse_config("distribution-id: 1-2-3-4-5-6-7-8\nscript-comand: /x\njunk line\n",
                       source="a.conf")
    assert any("a.conf:2" in w and "script-comand" in w for w in cfg.warnings)
    assert any("a.conf:3" in w for w in cfg.warnings)


@pytest.mark.parametrize("line, words", [
    ("timeout: soon", "timeout"),
    ("distribution-id: 0001-0002", "eight groups"),
    ("ls-sa-key: " + "k" * 65, "64"),
    ("push-port: 70000", "push-port"),
    ("ls-line0: pppoe 1 onlyid", "pppoe"),
    ("https-proxy-url: ftp://proxy", "http"),
])
def test_bad_values_name_the_file_line_and_problem(line, words):
    with pytest.raises(ConfigError) as e:
        parse_config("distribution-id: 1-2-3-4-5-6-7-8\n" + line + "\n", source="x.conf")
    assert "x.conf:2" in str(e.value) and words in str(e.value)


def test_missing_distribution_id_is_an_error_unless_given_on_the_command_line(tmp_path):
    p = tmp_path / "armsd.conf"
    p.write_text("ls-sa-key: k\n")
    with pytest.raises(ConfigError, match="distribution-id"):
        load_config(str(p))
    assert load_config(str(p), "0001-0000-0000-0000-0000-0000-0000-00ff").distribution_id \
        == "0001-0000-0000-0000-0000-0000-0000-00FF"


def test_unreadable_config_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(str(tmp_path / "nope.conf"))


def test_ls_lines_parse_every_type_and_secrets_are_known():
    cfg = parse_config("distribution-id: 1-2-3-4-5-6-7-8\nls-sa-key: lskey123\n"
                       "ls-line0: pppoe 2 user@isp pw-ppp\n"
                       "ls-line1: mobile 3 *99# 1 apn.example ip mob-id mob-pw\n"
                       "ls-line2: static 4 192.0.2.10\n"
                       "ls-line3: anonpppoe 1\n"
                       "https-proxy-url: http://u:proxy-pw@proxy:8080/\n")
    assert cfg.ls_lines[0] == Line(LineType.PPPOE, 2, pppoe_id="user@isp", pppoe_pass="pw-ppp")
    assert cfg.ls_lines[1] == Line(LineType.MOBILE, 3, telno="*99#", cid=1, apn="apn.example",
                                   pdp="ip", pppoe_id="mob-id", pppoe_pass="mob-pw")
    assert cfg.ls_lines[2].ipaddr == "192.0.2.10"
    assert cfg.ls_lines[3].type == LineType.ANONPPPOE
    assert set(cfg.secrets()) == {"lskey123", "pw-ppp", "mob-pw", "proxy-pw"}
    assert "lskey123" not in repr(cfg) and "pw-ppp" not in repr(cfg)


def test_distribution_id_text_is_normalised_to_upper_case_groups():
    assert normalize_distribution_id("1-0-101-0-0-0-dead-beef") == \
        "0001-0000-0101-0000-0000-0000-DEAD-BEEF"


def test_sample_config_parses_without_warnings():
    cfg = load_config(SAMPLE)
    assert cfg.warnings == ()
    assert cfg.distribution_id


def test_a_hook_timeout_not_below_the_callback_limit_is_warned_about():
    cfg = parse_config("distribution-id: 1-2-3-4-5-6-7-8\ntimeout: 90\n", source="t.conf")
    assert cfg.timeout == 90 and any("t.conf:2" in w and "60 s" in w for w in cfg.warnings)
