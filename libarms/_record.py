"""Small records: the part of ``dataclasses`` our device code uses, at a fraction of its cost.

Why not ``dataclasses``: importing it pulls in ``inspect``, ``ast``, ``dis`` and ``tokenize``
(about 1.5 MiB of RSS and 20 ms at armsd's launch), and every ``@dataclass`` compiles and
``exec``\\ s fresh ``__init__``/``__eq__``/``__repr__``/``__hash__``/``__setattr__`` source for its
class. Here one generic implementation of each method serves every record class; a class
statement only collects its field list (issue 5: armsd's footprint budget).

Usage::

    class Line(Record):                     # frozen (immutable) by default
        type: LineType
        ifindex: int = 0
        pppoe_pass: str = field(default="", repr=False)     # hidden from repr()

    class Context(Record, frozen=False):    # a mutable record
        lines: list = field(default_factory=list)

What a record class gets, as a frozen dataclass would:

* fields are the annotated class attributes, in order (base-class fields first); an
  annotation whose text starts with ``ClassVar`` is not a field. Annotations are never
  evaluated: modules keep ``from __future__ import annotations`` and the names are for readers;
* ``__init__`` taking the fields positionally or by keyword; a field's default is its class
  attribute value or ``field(default=...)``; ``field(default_factory=f)`` calls ``f()`` for each
  instance; a mutable default (list, dict, set) is refused when the class is made; a missing,
  unexpected or repeated argument is a ``TypeError`` worded as Python words it;
* ``__post_init__(self)``, when the class defines one, runs at the end of ``__init__`` (to
  validate);
* ``__eq__``: same class and equal fields (``field(compare=False)`` fields are left out);
  ``__hash__`` from the same fields when frozen; a mutable record is unhashable;
* ``__repr__``: ``Name(field=value, ...)`` without the ``field(repr=False)`` fields (secrets);
* frozen: assigning or deleting an attribute raises :class:`FrozenInstanceError` (an
  ``AttributeError``);
* ``__slots__``: instances have no ``__dict__`` and no other attributes than their fields
  (a class may name extra, non-field attributes in its own ``__slots__``: they are added);
* ``__match_args__`` (pattern matching), and copy/pickle support (through ``__init__``).

Module functions :func:`replace`, :func:`fields` and :func:`asdict` mirror the ``dataclasses``
ones. A frozen and a mutable record cannot inherit from each other (as with dataclasses).
"""

import sys
from operator import attrgetter

__all__ = ["Record", "Field", "field", "fields", "replace", "asdict", "is_record",
           "FrozenInstanceError", "MISSING"]


class FrozenInstanceError(AttributeError):
    """An assignment to (or deletion of) an attribute of a frozen record."""


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


#: "No default": the value of :attr:`Field.default` / :attr:`Field.default_factory` when unset.
MISSING = _Missing()


class Field:
    """One field of a record class (what :func:`fields` returns)."""

    __slots__ = ("name", "default", "default_factory", "repr", "compare")

    def __init__(self, default=MISSING, default_factory=MISSING, repr=True, compare=True):
        if default is not MISSING and default_factory is not MISSING:
            raise ValueError("cannot specify both default and default_factory")
        self.name = None
        self.default = default
        self.default_factory = default_factory
        self.repr = repr
        self.compare = compare

    def __repr__(self) -> str:
        return (f"Field(name={self.name!r}, default={self.default!r}, "
                f"default_factory={self.default_factory!r}, repr={self.repr}, "
                f"compare={self.compare})")


def field(*, default=MISSING, default_factory=MISSING, repr=True, compare=True):
    """A field with options: ``default`` or ``default_factory`` (a callable run per instance),
    ``repr=False`` to leave it out of ``repr()`` (secrets), ``compare=False`` to leave it out of
    ``==`` and ``hash()``."""
    return Field(default, default_factory, repr, compare)


class _RecordMeta(type):
    """Collects the fields when a record class is made; builds no code."""

    def __new__(mcls, name, bases, ns, frozen=None):
        inherited = ()
        base_frozen = None
        for base in bases:
            if isinstance(base, _RecordMeta) and base.__record_frozen__ is not None:
                inherited += base.__record_fields__
                base_frozen = base.__record_frozen__
        if frozen is None:
            frozen = True if base_frozen is None else base_frozen
        elif base_frozen is not None and frozen != base_frozen:
            raise TypeError(f"{name}: cannot inherit a {'non-' if frozen else ''}frozen record "
                            f"from a {'' if frozen else 'non-'}frozen one")
        if not bases:                       # Record itself
            frozen = None
        known = {f.name for f in inherited}
        own = []
        for fname, annotation in _annotations(ns).items():
            text = annotation if isinstance(annotation, str) else repr(annotation)
            if text.startswith(("ClassVar", "typing.ClassVar")):
                continue
            if fname in known:
                raise TypeError(f"{name}: field {fname!r} is already a field of a base record")
            value = ns.pop(fname, MISSING)
            f = value if isinstance(value, Field) else Field(value)
            if f.default is not MISSING and type(f.default).__hash__ is None:
                raise ValueError(f"{name}.{fname}: mutable default {type(f.default).__name__} "
                                 "would be shared by every instance: use "
                                 "field(default_factory=...)")
            f.name = fname
            own.append(f)
        extra = ns.get("__slots__", ())
        ns["__slots__"] = tuple(f.name for f in own) + ((extra,) if isinstance(extra, str)
                                                       else tuple(extra))
        all_fields = inherited + tuple(own)
        after_default = None
        for f in all_fields:
            if f.default is not MISSING or f.default_factory is not MISSING:
                after_default = f.name
            elif after_default is not None:
                raise TypeError(f"{name}: non-default field {f.name!r} follows default field "
                                f"{after_default!r}")
        if frozen:
            ns.setdefault("__setattr__", _frozen_setattr)
            ns.setdefault("__delattr__", _frozen_delattr)
        elif frozen is False and "__hash__" not in ns:
            ns["__hash__"] = None
        names = tuple(f.name for f in all_fields)
        ns["__record_fields__"] = all_fields
        ns["__record_frozen__"] = frozen
        ns["__record_names__"] = names
        ns["__record_index__"] = {n: i for i, n in enumerate(names)}
        ns["__record_defaults__"] = tuple(f.default for f in all_fields)
        ns["__record_required__"] = sum(1 for f in all_fields if f.default is MISSING
                                        and f.default_factory is MISSING)
        ns["__record_factories__"] = tuple((i, f.name, f.default_factory)
                                           for i, f in enumerate(all_fields)
                                           if f.default_factory is not MISSING)
        ns["__record_key__"] = staticmethod(_getter(tuple(f.name for f in all_fields if f.compare)))
        ns["__record_shown__"] = tuple(f.name for f in all_fields if f.repr)
        ns["__match_args__"] = names
        cls = super().__new__(mcls, name, bases, ns)
        cls.__record_post_init__ = getattr(cls, "__post_init__", None)
        return cls


def _annotations(ns) -> dict:
    """The class body's annotations, never evaluated under ``from __future__ import
    annotations`` (our modules). Python 3.14+ without it keeps them in an annotate function."""
    ann = ns.get("__annotations__")
    if ann is not None:
        return ann
    if sys.version_info >= (3, 14):
        import annotationlib
        annotate = annotationlib.get_annotate_from_class_namespace(ns)
        if annotate is not None:
            return annotationlib.call_annotate_function(annotate,
                                                        annotationlib.Format.FORWARDREF)
    return {}


def _getter(names):
    """A function returning the named attributes as a tuple (C speed for 2+ names)."""
    if len(names) > 1:
        return attrgetter(*names)
    if len(names) == 1:
        one = attrgetter(names[0])
        return lambda obj: (one(obj),)
    return lambda obj: ()


def _frozen_setattr(self, name, value):
    raise FrozenInstanceError(f"cannot assign to field {name!r} of frozen "
                              f"{type(self).__qualname__}")


def _frozen_delattr(self, name):
    raise FrozenInstanceError(f"cannot delete field {name!r} of frozen "
                              f"{type(self).__qualname__}")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


class Record(metaclass=_RecordMeta):
    """Base class of records (see the module docstring). ``frozen=False`` as a class keyword
    makes a mutable record."""

    __slots__ = ()

    def __init__(self, *args, **kwargs):
        cls = self.__class__
        names = cls.__record_names__
        n = len(args)
        if n > len(names):
            raise TypeError(f"{cls.__qualname__}.__init__() takes {len(names) + 1} positional "
                            f"arguments but {n + 1} were given")
        put = object.__setattr__
        # every field gets its argument or its default (MISSING for required and factory
        # fields, settled below), then the keywords overwrite theirs
        for name, value in zip(names, args + cls.__record_defaults__[n:]):
            put(self, name, value)
        if kwargs:
            index = cls.__record_index__
            for name, value in kwargs.items():
                i = index.get(name)
                if i is None:
                    raise TypeError(f"{cls.__qualname__}.__init__() got an unexpected keyword "
                                    f"argument {name!r}")
                if i < n:
                    raise TypeError(f"{cls.__qualname__}.__init__() got multiple values for "
                                    f"argument {name!r}")
                put(self, name, value)
        if n < cls.__record_required__:
            missing = [repr(name) for name in names[n:cls.__record_required__]
                       if name not in kwargs]
            if missing:
                listed = missing[0] if len(missing) == 1 else (
                    ", ".join(missing[:-1]) + " and " + missing[-1])
                what = _plural(len(missing), "required positional argument")
                raise TypeError(f"{cls.__qualname__}.__init__() missing {what}: {listed}")
        for i, name, factory in cls.__record_factories__:
            if i >= n and name not in kwargs:
                put(self, name, factory())
        if cls.__record_post_init__ is not None:
            self.__post_init__()

    def __repr__(self) -> str:
        shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__record_shown__)
        return f"{type(self).__qualname__}({shown})"

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        key = self.__record_key__
        return key(self) == key(other)

    def __hash__(self):
        return hash(self.__record_key__(self))

    def __reduce__(self):
        return type(self), tuple(getattr(self, n) for n in self.__record_names__)


def is_record(obj) -> bool:
    """True for a record instance or record class (not :class:`Record` itself)."""
    cls = obj if isinstance(obj, type) else type(obj)
    return isinstance(cls, _RecordMeta) and cls.__record_frozen__ is not None


def fields(obj) -> tuple:
    """The :class:`Field` objects of a record (instance or class), in order."""
    if not is_record(obj):
        raise TypeError(f"fields() wants a record or record class, got {type(obj).__name__}")
    return obj.__record_fields__


def replace(obj, **changes):
    """A copy of record ``obj`` with ``changes`` applied (through ``__init__``, so
    ``__post_init__`` checks the result). An unknown field name is a ``TypeError``."""
    if not is_record(obj) or isinstance(obj, type):
        raise TypeError(f"replace() wants a record instance, got {type(obj).__name__}")
    values = {n: getattr(obj, n) for n in obj.__record_names__}
    values.update(changes)
    return type(obj)(**values)


def asdict(obj) -> dict:
    """``{field: value}`` of a record, recursing into records, lists, tuples and dicts (as
    ``dataclasses.asdict``; other values are the same objects, not copies)."""
    if not is_record(obj) or isinstance(obj, type):
        raise TypeError(f"asdict() wants a record instance, got {type(obj).__name__}")
    return _asdict(obj)


def _asdict(value):
    if is_record(value):
        return {n: _asdict(getattr(value, n)) for n in value.__record_names__}
    if isinstance(value, tuple) and hasattr(value, "_fields"):      # namedtuple
        return type(value)(*[_asdict(v) for v in value])
    if isinstance(value, (list, tuple)):
        return type(value)(_asdict(v) for v in value)
    if isinstance(value, dict):
        return type(value)((_asdict(k), _asdict(v)) for k, v in value.items())
    return value
