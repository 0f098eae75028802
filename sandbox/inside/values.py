"""The value codec: what crosses between the candidate G and the judge T, and how.

Values are JSON with tagged objects (``{"#t": [...]}`` for a tuple, ...). Encoding runs in
whichever process sends; decoding builds *only* builtin types and a fixed list of standard
library value types, each through its public constructor from plain data, so a decoded value
behaves exactly as the standard type does and never runs candidate code (no pickle: unpickling
in T would let the candidate run code in the process that writes the verdict). Types are
named by module and qualified name and must be the very class the standard module defines.

Carried exactly (type, order, equality, ``isinstance``): ``None``, ``bool``, ``int``,
``float``, ``complex``, ``str``, ``bytes``, ``bytearray``, ``list``, ``tuple``, ``dict``,
``set``, ``frozenset``, ``range``, ``collections.OrderedDict``/``Counter``/``deque``/
``defaultdict`` (its factory when it is a builtin type, else none), ``fractions.Fraction``,
``decimal.Decimal``, ``datetime.date``/``time``/``datetime``/``timedelta`` (naive or with a
fixed ``timezone``), and ``namedtuple`` values (rebuilt in T as a namedtuple of the same name
and fields, without the program's methods). Exceptions cross as their class chain (see
:func:`exception_data`). Anything else stays in G behind a handle; a value nested deeper
than ``MAX_VALUE_DEPTH`` is refused with a reason (:class:`TooDeep`).
"""

import sys

MAX_VALUE_DEPTH = 1000  # CPython's own == on nested containers stops near its recursion limit
MAX_TYPES = 1000  # namedtuple and exception classes rebuilt in one process
_FACTORIES = {"int": int, "float": float, "str": str, "list": list, "dict": dict, "set": set, "tuple": tuple}
_STD = {  # (module, qualname) -> tag: the standard value types, recognised by identity
    ("collections", "OrderedDict"): "#od", ("collections", "Counter"): "#ctr",
    ("collections", "defaultdict"): "#dd", ("collections", "deque"): "#dq",
    ("fractions", "Fraction"): "#fr", ("decimal", "Decimal"): "#dec",
    ("datetime", "date"): "#date", ("datetime", "datetime"): "#dtm",
    ("datetime", "time"): "#time", ("datetime", "timedelta"): "#td",
}  # fmt: skip
_CLASSES = {}  # (module, qualname) of a tag -> the class, imported on first decode
_NAMEDTUPLES = {}


class TooDeep(ValueError):
    """A value nested deeper than the codec carries: a reason for the verdict, not a handle."""


def deep_call(fn, *args):
    """``fn(*args)`` with room for ``MAX_VALUE_DEPTH`` levels of codec and JSON recursion; the
    program's own recursion limit is restored afterwards."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(old + 6 * MAX_VALUE_DEPTH)
    try:
        return fn(*args)
    finally:
        sys.setrecursionlimit(old)


def _std_tag(t):
    key = (getattr(t, "__module__", None), getattr(t, "__qualname__", None))
    tag = _STD.get(key)
    module = sys.modules.get(key[0]) if tag else None
    return tag if module is not None and getattr(module, key[1], None) is t else None


def _items(x, depth):
    return [[encode_value(k, depth + 1), encode_value(v, depth + 1)] for k, v in dict.items(x)]


def encode_value(x, depth=0):
    if depth > MAX_VALUE_DEPTH:
        raise TooDeep(f"value nested deeper than {MAX_VALUE_DEPTH} levels")
    t = type(x)
    if x is None or t is bool or t is str or t is float:
        return x
    if t is int:
        return x if x.bit_length() < 10000 else {"#i": hex(x)}
    if t is list:
        return [encode_value(v, depth + 1) for v in x]
    if t is tuple:
        return {"#t": [encode_value(v, depth + 1) for v in x]}
    if t is dict:
        return {"#d": _items(x, depth)}
    if t is set or t is frozenset:
        return {"#s" if t is set else "#f": [encode_value(v, depth + 1) for v in x]}
    if t is bytes or t is bytearray:
        return {"#b" if t is bytes else "#ba": x.hex()}
    if t is complex:
        return {"#c": [x.real, x.imag]}
    if t is range:
        return {"#rg": [encode_value(x.start), encode_value(x.stop), encode_value(x.step)]}
    if t.__bases__ == (tuple,) and type(t.__dict__.get("_fields")) is tuple:
        fields = list(t.__dict__["_fields"])
        return {"#nt": [t.__module__, t.__name__, fields, [encode_value(v, depth + 1) for v in tuple.__iter__(x)]]}
    tag = _std_tag(t)
    if tag in ("#od", "#ctr"):
        return {tag: _items(x, depth)}
    if tag == "#dd":
        factory = x.default_factory
        name = next((n for n, f in _FACTORIES.items() if f is factory), None)
        return {tag: [name, _items(x, depth)]}
    if tag == "#dq":
        return {tag: [x.maxlen, [encode_value(v, depth + 1) for v in x]]}
    if tag == "#fr":
        return {tag: [encode_value(int(x.numerator)), encode_value(int(x.denominator))]}
    if tag == "#dec":
        return {tag: str(x)}
    if tag in ("#date", "#dtm", "#time"):
        tz = getattr(x, "tzinfo", None)
        if tz is not None and type(tz) is not sys.modules["datetime"].timezone:
            raise TypeError(f"{t.__qualname__} with a {type(tz).__qualname__} tzinfo is not plain data")
        return {tag: [x.isoformat(), getattr(x, "fold", 0)]}
    if tag == "#td":
        return {tag: [x.days, x.seconds, x.microseconds]}
    raise TypeError(f"value of type {t.__module__}.{t.__qualname__} is not plain data")


def _cls(tag):
    if tag not in _CLASSES:
        import importlib

        mod, name = next(k for k, v in _STD.items() if v == tag)
        _CLASSES[tag] = getattr(importlib.import_module(mod), name)
    return _CLASSES[tag]


def _pairs(v, depth, into):
    for pair in _list(v):
        if type(pair) is not list or len(pair) != 2:
            raise ValueError("bad dict item")
        into[decode_value(pair[0], depth + 1)] = decode_value(pair[1], depth + 1)
    return into


def _int(v):
    v = decode_value(v)
    if type(v) is not int:
        raise ValueError("malformed value")
    return v


def namedtuple_class(module, name, fields):
    """One class per (module, name, fields) in this process; ``collections.namedtuple``
    validates the names (identifiers, no keywords, no leading underscore)."""
    key = (str(module), str(name), tuple(fields))
    cls = _NAMEDTUPLES.get(key)
    if cls is None:
        if len(_NAMEDTUPLES) >= MAX_TYPES or not all(type(f) is str for f in fields) or len(fields) > 255:
            raise ValueError("malformed namedtuple")
        from collections import namedtuple

        cls = _NAMEDTUPLES[key] = namedtuple(key[1], key[2], module=key[0])
    return cls


def decode_value(x, depth=0):
    if depth > MAX_VALUE_DEPTH:
        raise TooDeep(f"value nested deeper than {MAX_VALUE_DEPTH} levels")
    t = type(x)
    if x is None or t in (bool, int, float, str):
        return x
    if t is list:
        return [decode_value(v, depth + 1) for v in x]
    if t is not dict or len(x) != 1:
        raise ValueError("malformed value")
    ((tag, v),) = x.items()
    if tag == "#t":
        return tuple([decode_value(e, depth + 1) for e in _list(v)])
    if tag == "#d":
        return _pairs(v, depth, {})
    if tag == "#s":
        return {decode_value(e, depth + 1) for e in _list(v)}
    if tag == "#f":
        return frozenset([decode_value(e, depth + 1) for e in _list(v)])
    if tag in ("#b", "#ba") and type(v) is str:
        return (bytes if tag == "#b" else bytearray).fromhex(v)
    if tag == "#c" and type(v) is list and len(v) == 2:
        return complex(float(v[0]), float(v[1]))
    if tag == "#i" and type(v) is str:
        return int(v, 16)
    if tag == "#rg" and type(v) is list and len(v) == 3:
        return range(_int(v[0]), _int(v[1]), _int(v[2]))
    if tag == "#nt" and type(v) is list and len(v) == 4 and type(v[2]) is list:
        cls = namedtuple_class(v[0], v[1], v[2])
        values = [decode_value(e, depth + 1) for e in _list(v[3])]
        if len(values) != len(v[2]):
            raise ValueError("malformed namedtuple")
        return cls._make(values)
    if tag in ("#od", "#ctr"):
        return _pairs(v, depth, _cls(tag)())
    if tag == "#dd" and type(v) is list and len(v) == 2 and (v[0] is None or v[0] in _FACTORIES):
        return _pairs(v[1], depth, _cls(tag)(_FACTORIES.get(v[0])))
    if tag == "#dq" and type(v) is list and len(v) == 2 and (v[0] is None or type(v[0]) is int):
        return _cls(tag)([decode_value(e, depth + 1) for e in _list(v[1])], v[0])
    if tag == "#fr" and type(v) is list and len(v) == 2:
        return _cls(tag)(_int(v[0]), _int(v[1]))
    if tag == "#dec" and type(v) is str:
        return _cls(tag)(v)
    if tag in ("#date", "#dtm", "#time") and type(v) is list and len(v) == 2 and type(v[0]) is str:
        value = _cls(tag).fromisoformat(v[0])
        return value.replace(fold=1) if tag != "#date" and v[1] == 1 else value
    if tag == "#td" and type(v) is list and len(v) == 3:
        return _cls(tag)(_int(v[0]), _int(v[1]), _int(v[2]))
    raise ValueError("malformed value")


def _list(v):
    if type(v) is not list:
        raise ValueError("malformed value")
    return v


# ------------------------------------------------------------------ exceptions


def exception_data(exc):
    """What T needs to rebuild ``exc`` (runs in G): its class chain by module and qualified
    name, its args and its public plain-data attributes (``JSONDecodeError.pos``, ...)."""
    mro = [[str(getattr(c, "__module__", "")), str(getattr(c, "__qualname__", ""))] for c in type(exc).__mro__[:32]]
    try:
        args = encode_value(list(exc.args))
    except Exception:  # noqa: BLE001 - args that are not data: the text stands in for them
        args = None
    attrs = {}
    for name, value in list(getattr(exc, "__dict__", {}).items())[:32]:
        if type(name) is str and name.isidentifier() and not name.startswith("_"):
            try:
                attrs[name] = encode_value(value)
            except Exception:  # noqa: BLE001 - an attribute that is not data is left out
                pass
    return {"mro": mro, "args": args, "attrs": attrs}


def _resolve(module, qualname):
    """The class ``module.qualname`` if this process has already imported that module (nothing
    is imported on the candidate's word) and it is an ``Exception`` class. Never one of the
    sandbox's own (``__main__`` here is the joined sandbox script), nor ``StopIteration``."""
    ok = type(module) is str and type(qualname) is str and module != "__main__"
    obj = sys.modules.get(module) if ok else None
    for part in qualname.split(".") if obj is not None else ():
        obj = getattr(obj, part, None)
    if not isinstance(obj, type) or not issubclass(obj, Exception):
        return None
    return None if issubclass(obj, (StopIteration, StopAsyncIteration)) else obj


_EXC_CLASSES = {}


def exception_class(data):
    """The class T raises for a candidate exception: the same class when T has it, otherwise a
    stand-in of the same name derived from every known class in its chain, so that
    ``except ValueError`` (or ``except json.JSONDecodeError``) catches it as in CPython."""
    mro = data.get("mro") if type(data) is dict else None
    if type(mro) is not list or not mro or not all(type(e) is list and len(e) == 2 for e in mro):
        raise ValueError("malformed exception")
    known = [c for c in (_resolve(m, q) for m, q in mro) if c is not None]
    if known and mro[0] == [known[0].__module__, known[0].__qualname__]:
        return known[0]
    bases = []
    for c in known:
        if not any(issubclass(b, c) for b in bases):
            bases.append(c)
    key = (tuple(mro[0]), tuple(bases))
    if key not in _EXC_CLASSES:
        if len(_EXC_CLASSES) >= MAX_TYPES:
            raise ValueError("too many exception classes")
        name = {"__module__": str(mro[0][0]), "__qualname__": str(mro[0][1])}
        short = str(mro[0][1]).rsplit(".", 1)[-1] or "Exception"
        try:
            _EXC_CLASSES[key] = type(short, tuple(bases) or (Exception,), name)
        except TypeError:  # bases whose layouts conflict: the nearest one alone
            _EXC_CLASSES[key] = type(short, (bases[0],), name)
    return _EXC_CLASSES[key]


def build_exception(cls, data, text):
    """An instance of ``cls`` with the candidate's args and attributes, made without running
    ``__init__`` (whose signature may differ), or None."""
    try:
        args = decode_value(data["args"]) if data.get("args") is not None else [text]
        exc = cls.__new__(cls, *args)
        exc.args = tuple(args)
    except Exception:  # noqa: BLE001
        return None
    attrs = data.get("attrs")
    for name, value in (attrs.items() if type(attrs) is dict else ()):
        if type(name) is str and name.isidentifier() and not name.startswith("_") and name != "args":
            try:
                setattr(exc, name, decode_value(value))
            except Exception:  # noqa: BLE001 - a read-only or malformed attribute is left out
                pass
    return exc
