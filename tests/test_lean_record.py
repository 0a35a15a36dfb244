"""libarms._record: the small record classes that replace dataclasses on the device path.

The contract is the part of frozen dataclasses our code relies on (construction, defaults,
immutability, equality, hashing, repr without secrets, replace/fields/asdict), checked here on
toy classes and on the real device records, plus the reason the helper exists: the device
modules load neither dataclasses (and its inspect/ast/dis/tokenize) nor typing.
"""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys

import pytest

from libarms import _record
from libarms._record import FrozenInstanceError, Record, asdict, field, fields, replace
from libarms.callbacks import Line, LineType
from libarms.context import Context
from libarms.daemon.config import DaemonConfig
from libarms.errors import ConfigError
from libarms.heartbeat import HbServer
from libarms.protocol.distid import DistributionId
from libarms.protocol.heartbeat import CpuUsage, HeartbeatPacket
from libarms.protocol.pull import HeartbeatInfo, RsInfo
from libarms.transport.tls import TlsPolicy


class Point(Record):
    x: int
    y: int = 0
    secret: str = field(default="", repr=False)
    note: str = field(default="", compare=False)


class Bag(Record):
    name: str
    items: list = field(default_factory=list)


class Counter(Record, frozen=False):
    name: str
    hits: int = 0
    seen: list = field(default_factory=list)


class Checked(Record):
    value: int

    def __post_init__(self):
        if self.value < 0:
            raise ValueError(f"value must not be negative, got {self.value}")


# -- construction --------------------------------------------------------------------------------

def test_record_takes_fields_positionally_and_by_keyword_in_declared_order():
    assert Point(1, 2).x == 1 and Point(1, 2).y == 2
    assert Point(y=2, x=1) == Point(1, 2)
    assert Point(1, secret="s").secret == "s"
    assert _record.fields(Point)[0].name == "x"
    assert Point.__match_args__ == ("x", "y", "secret", "note")


def test_missing_field_defaults_apply_and_factory_is_called_per_instance():
    p = Point(5)
    assert (p.y, p.secret, p.note) == (0, "", "")
    a, b = Bag("a"), Bag("b")
    assert a.items == [] and a.items is not b.items
    a.items.append(1)
    assert b.items == []


def test_missing_argument_is_a_type_error_naming_the_field():
    with pytest.raises(TypeError, match=r"Point.__init__\(\) missing 1 required positional "
                                        r"argument: 'x'"):
        Point()
    with pytest.raises(TypeError, match=r"missing 2 required positional arguments: 'host' "
                                        r"and 'port'"):
        HbServer(passphrase="p")


def test_too_many_positional_arguments_is_a_type_error():
    with pytest.raises(TypeError, match=r"takes 5 positional arguments but 6 were given"):
        Point(1, 2, "s", "n", "extra")


def test_unknown_or_repeated_keyword_is_a_type_error():
    with pytest.raises(TypeError, match="unexpected keyword argument 'z'"):
        Point(1, z=3)
    with pytest.raises(TypeError, match="multiple values for argument 'x'"):
        Point(1, x=2)


def test_post_init_validates_every_construction():
    assert Checked(3).value == 3
    with pytest.raises(ValueError, match="must not be negative"):
        Checked(-1)
    with pytest.raises(ConfigError, match="sa_type must be an integer of 16 bits"):
        DistributionId(1, 2, 1 << 16, 4)


def test_class_definition_rejects_a_shared_mutable_default():
    with pytest.raises(ValueError, match="mutable default list.*default_factory"):
        class Bad(Record):
            items: list = []


def test_class_definition_rejects_a_required_field_after_a_default_one():
    with pytest.raises(TypeError, match="non-default field 'b' follows default field 'a'"):
        class Bad(Record):
            a: int = 0
            b: int


def test_field_with_both_default_and_factory_is_refused():
    with pytest.raises(ValueError, match="both default and default_factory"):
        field(default=1, default_factory=list)


def test_classvar_annotation_is_not_a_field():
    class WithConstant(Record):
        LIMIT: ClassVar[int] = 10  # noqa: F821 (never evaluated)
        value: int

    assert [f.name for f in fields(WithConstant)] == ["value"]
    assert WithConstant(1).LIMIT == 10


def test_record_defined_without_postponed_annotations_works_the_same():
    src = ("from typing import ClassVar\n"
           "from libarms._record import Record, field\n"
           "class Plain(Record):\n"
           "    LIMIT: ClassVar[int] = 3\n"
           "    name: str\n"
           "    size: int = field(default=0, repr=False)\n")
    ns: dict = {}
    exec(compile(src, "<plain>", "exec", dont_inherit=True), ns)
    Plain = ns["Plain"]
    assert [f.name for f in fields(Plain)] == ["name", "size"]
    assert repr(Plain("a", 2)) == "Plain(name='a')" and Plain.LIMIT == 3


# -- immutability ----------------------------------------------------------------------------------

def test_frozen_record_refuses_assignment_and_deletion():
    p = Point(1)
    with pytest.raises(FrozenInstanceError, match="cannot assign to field 'x'"):
        p.x = 2
    with pytest.raises(AttributeError):      # FrozenInstanceError is an AttributeError
        del p.y
    with pytest.raises(AttributeError):
        p.other = 1
    assert p.x == 1
    line = Line(LineType.PPPOE, 1, pppoe_id="id", pppoe_pass="pw")
    with pytest.raises(FrozenInstanceError):
        line.pppoe_pass = "other"


def test_record_instances_have_slots_and_no_dict():
    assert not hasattr(Point(1), "__dict__")
    c = Counter("c")
    c.hits += 1
    assert c.hits == 1
    with pytest.raises(AttributeError):
        c.typo = 1                            # a misspelt field is an error, not a new attribute


def test_extra_slots_hold_non_field_attributes():
    class Running(Record, frozen=False):
        __slots__ = ("_loop",)
        name: str

    r = Running("r")
    r._loop = "loop"
    assert r._loop == "loop" and [f.name for f in fields(r)] == ["name"]
    assert repr(r).endswith("Running(name='r')") and r == Running("r")
    with pytest.raises(AttributeError):
        r.other = 1


def test_frozen_and_mutable_records_do_not_inherit_from_each_other():
    with pytest.raises(TypeError, match="cannot inherit"):
        class Mixed(Point, frozen=False):
            z: int = 0


def test_subclass_adds_fields_after_the_base_fields():
    class Point3(Point):
        z: int = 0

    p = Point3(1, 2, z=3)
    assert [f.name for f in fields(p)] == ["x", "y", "secret", "note", "z"]
    assert (p.x, p.y, p.z) == (1, 2, 3)
    with pytest.raises(FrozenInstanceError):
        p.z = 4
    assert Point3(1, 2) != Point(1, 2)        # another class is never equal


# -- equality, hashing, repr -----------------------------------------------------------------------

def test_equal_fields_make_equal_records_with_equal_hashes():
    assert Point(1, 2) == Point(1, 2)
    assert hash(Point(1, 2)) == hash(Point(1, 2))
    assert Point(1, 2) != Point(1, 3)
    assert len({Point(1, 2), Point(1, 2), Point(2, 2)}) == 2
    assert Point(1) != (1, 0, "", "")


def test_compare_false_field_is_left_out_of_eq_and_hash():
    assert Point(1, note="a") == Point(1, note="b")
    assert hash(Point(1, note="a")) == hash(Point(1, note="b"))


def test_mutable_record_compares_by_value_but_is_unhashable():
    assert Counter("a", 1) == Counter("a", 1)
    with pytest.raises(TypeError, match="unhashable"):
        hash(Counter("a"))


def test_repr_lists_fields_but_hides_the_repr_false_ones():
    assert repr(Point(1, 2, secret="hunter2", note="n")) == "Point(x=1, y=2, note='n')"
    line = Line(LineType.PPPOE, 1, pppoe_id="user", pppoe_pass="pppoe-secret")
    assert "user" in repr(line) and "pppoe-secret" not in repr(line)


@pytest.mark.parametrize("make, secret", [
    (lambda: HeartbeatInfo("127.0.0.1", 1, "hb-secret"), "hb-secret"),
    (lambda: HbServer("127.0.0.1", 1, "hb-secret"), "hb-secret"),
    (lambda: DaemonConfig(ls_sa_key="sa-key-secret"), "sa-key-secret"),
    (lambda: TlsPolicy("RS", "ca", "cert", "key-pem-secret"), "key-pem-secret"),
    (lambda: Context(DistributionId(1, 2, 3, 4), None, rs_key="rs-key-secret",
                     sa_key_pem="sa-pem-secret"), "secret"),
])
def test_device_records_keep_secrets_out_of_repr(make, secret):
    text = repr(make())
    assert secret not in text
    assert text.startswith(type(make()).__qualname__ + "(")


# -- replace, fields, asdict, copies --------------------------------------------------------------

def test_replace_returns_a_changed_copy_and_keeps_the_original():
    p = Point(1, 2, secret="s")
    q = replace(p, y=5)
    assert (q.x, q.y, q.secret) == (1, 5, "s") and p.y == 2
    cfg = replace(DaemonConfig(), path_work_dir="/tmp/x")
    assert cfg.path_work_dir == "/tmp/x" and cfg.path_pid == DaemonConfig().path_pid


def test_replace_runs_post_init_and_refuses_unknown_fields():
    d = DistributionId(1, 2, 3, 4)
    with pytest.raises(ConfigError):
        replace(d, sa_code=-1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'nope'"):
        replace(d, nope=1)
    with pytest.raises(TypeError, match="record instance"):
        replace(Point, x=1)


def test_fields_lists_field_options_in_order():
    fs = fields(HeartbeatInfo)
    assert [f.name for f in fs] == ["host", "port", "passphrase", "interval", "algorithms"]
    assert [f.name for f in fs if not f.repr] == ["passphrase"]
    assert fields(HeartbeatInfo("h", 1, "p")) == fs
    with pytest.raises(TypeError):
        fields(object())


def test_asdict_recurses_into_nested_records_and_containers():
    pkt = HeartbeatPacket(b"d" * 20, None, (CpuUsage(0, 5), CpuUsage(1, 7)))
    assert asdict(pkt) == {"digest": b"d" * 20, "distribution_id": None,
                           "items": ({"index": 0, "utilization": 5},
                                     {"index": 1, "utilization": 7})}
    assert asdict(RsInfo("https://127.0.0.1/"))["location"] == {"lines": (),
                                                               "rs_certificate": None}
    assert asdict(Counter("c", seen=[Point(1)]))["seen"] == [
        {"x": 1, "y": 0, "secret": "", "note": ""}]


def test_records_survive_copy_and_pickle():
    line = Line(LineType.STATIC, 2, ipaddr="192.0.2.1")
    assert copy.copy(line) == line and copy.deepcopy(line) == line
    assert pickle.loads(pickle.dumps(line)) == line
    c = Counter("c", 2, [1])
    d = copy.deepcopy(c)
    assert d == c and d.seen is not c.seen


def test_records_work_in_pattern_matching():
    match Line(LineType.DHCP, 3):
        case Line(LineType.DHCP, ifindex):
            assert ifindex == 3
        case _:
            pytest.fail("Line did not match its own fields")


# -- why it exists ---------------------------------------------------------------------------------

#: What armsd imports, the push phase included (on threads, without asyncio: asyncio itself
#: loads typing and inspect).
DEVICE_MODULES = [
    "libarms.daemon.main", "libarms.daemon.app", "libarms.agent", "libarms.heartbeat",
    "libarms.context", "libarms.callbacks", "libarms.configstore", "libarms.chunkcodec",
    "libarms.protocol", "libarms.protocol.push", "libarms.protocol.chunks",
    "libarms.protocol.heartbeat", "libarms.protocol.cstate", "libarms.protocol.initial_config",
    "libarms.transport.tls", "libarms.transport.https",
    "libarms.push", "libarms.transport.tunnel", "libarms.transport.simple",
    "libarms.transport.pushtls",
]


def test_device_modules_load_neither_dataclasses_nor_typing():
    code = ("import sys\n"
            f"for m in {DEVICE_MODULES!r}: __import__(m)\n"
            "print(' '.join(sorted(m for m in ('dataclasses', 'inspect', 'ast', 'dis', 'typing')"
            " if m in sys.modules)))\n"
            "print(len([m for m in sys.modules if m.startswith('libarms')]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split("\n")
    assert out[0] == "", f"device modules load {out[0]}"
    assert int(out[1]) > 20      # the imports really ran
