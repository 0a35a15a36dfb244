"""The package's outer face: error codes, states and the callback contract."""

import libarms
from libarms import Callbacks, Err, Line, LineType, State


def test_error_codes_decode_to_libarms_level_and_type():
    # spec/arms-agent.md §4.9, values verified against the 5.33 header.
    assert (Err.ETIMEOUT.level, Err.ETIMEOUT.type) == (1, 103)
    assert (Err.EDONTRETRY.level, Err.EDONTRETRY.type) == (4, 102)
    assert (Err.EEXIST.level, Err.EEXIST.type) == (5, 0)
    assert int(Err.EREBOOT) == 104 and int(Err.EPULL) == 105


def test_states_keep_libarms_numbers():
    assert [int(s) for s in (State.INITIAL, State.RSPULL, State.BOOT_FAIL, State.PUSH_WAIT,
                             State.PUSH_REBOOT)] == [0, 2, 4, 12, 16]


def test_callbacks_report_which_methods_the_application_overrides():
    class App(Callbacks):
        def md_command(self, module_id, command):
            return "ok"

    app = App()
    assert app.supports("md_command")
    assert not app.supports("get_status")
    assert not Callbacks().supports("md_command")


def test_line_repr_never_shows_the_password():
    line = Line(LineType.PPPOE, 1, pppoe_id="user@isp", pppoe_pass="s3cret")
    assert "s3cret" not in repr(line)
    assert "user@isp" in repr(line)


def test_agent_is_exported_lazily():
    assert "Agent" in libarms.__all__
