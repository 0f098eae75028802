"""Type-check a pass-through section against the annotations of the class that will take it.

Libraries build these objects without checking types (`trl.SFTConfig(max_steps="five")` is
accepted and fails an hour later inside the trainer; `vllm.EngineArgs(max_model_len="x")` too),
so `sdp.preflight` first compares each value with the field's annotation and reports
`sft.max_steps: expected int, got 'five'`, then lets the library build the object. Only the shapes
that can be checked without guessing are checked: `int`, `float`, `bool`, `str`, `None`, `Literal`,
unions of those, and `list`/`dict`/`tuple` (their items too). Any other annotation (an Enum, a
class, a string the hints cannot resolve) is left to the library.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union


class FieldTypeError(ValueError):
    """A section value of the wrong type, or a key the class does not have (the message names both)."""


_UNKNOWN = object()  # an annotation this module does not judge


def field_names(cls: type) -> list[str]:
    """The keyword fields of a dataclass or a msgspec Struct (vLLM's SamplingParams)."""
    if hasattr(cls, "__struct_fields__"):
        return list(cls.__struct_fields__)
    return [f.name for f in dataclasses.fields(cls) if f.init]


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # forward references to modules not imported: judge what resolves
        hints: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            for name, hint in getattr(klass, "__annotations__", {}).items():
                hints[name] = hint if not isinstance(hint, str) else _UNKNOWN
        return hints


def _describe(hint: Any) -> str:
    if hint is type(None):
        return "null"
    if isinstance(hint, type):
        return hint.__name__
    origin = typing.get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    return str(hint).replace("typing.", "")


def _matches(value: Any, hint: Any) -> bool | None:
    """True/False when `hint` can be judged, None when it is left to the library."""
    if hint is Any or hint is _UNKNOWN or isinstance(hint, (str, typing.TypeVar)):
        return None
    if hint is type(None) or hint is None:
        return value is None
    origin = typing.get_origin(hint)
    if origin is Literal:
        return value in typing.get_args(hint)
    if origin in (Union, types.UnionType):
        results = [_matches(value, arg) for arg in typing.get_args(hint)]
        if any(r is True for r in results):
            return True
        return None if any(r is None for r in results) else False
    if origin is typing.Annotated:
        return _matches(value, typing.get_args(hint)[0])
    if origin in (list, tuple, set, frozenset, dict) or hint in (list, tuple, dict):
        container = origin or hint
        if container in (list, tuple, set, frozenset):
            if not isinstance(value, (list, tuple)):
                return False
            args = [a for a in typing.get_args(hint) if a is not Ellipsis]
            if len(args) == 1:
                results = [_matches(v, args[0]) for v in value]
                return False if False in results else (None if None in results else True)
            return True
        if not isinstance(value, Mapping):
            return False
        args = typing.get_args(hint)
        if len(args) == 2:
            results = [_matches(v, args[1]) for v in value.values()]
            return False if False in results else (None if None in results else True)
        return True
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:  # an int is a float where a float is expected (YAML writes 1, not 1.0)
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return None  # the library converts strings to members and names the bad ones
    return None


def closest(name: str, names: list[str] | tuple[str, ...] | set[str]) -> str:
    """` (did you mean X?)` for the closest of `names`, or an empty string."""
    match = difflib.get_close_matches(name, list(names), n=1, cutoff=0.6)
    return f" (did you mean {match[0]}?)" if match else ""


def check_section(section: str, cls: type, values: Mapping[str, Any], skip: tuple[str, ...] = ()) -> None:
    """Raise `FieldTypeError` for the first key of `values` that `cls` lacks or whose value has the wrong type."""
    if not isinstance(values, Mapping):
        raise FieldTypeError(f"{section}: expected a mapping, got {values!r}")
    names = field_names(cls)
    hints = _hints(cls)
    for key, value in values.items():
        if key in skip:
            continue
        if key not in names:
            raise FieldTypeError(f"{section}.{key}: not a field of {cls.__module__.split('.')[0]}."
                                 f"{cls.__name__}{closest(key, names)}")
        hint = hints.get(key, _UNKNOWN)
        if _matches(value, hint) is False:
            extra = ""
            if isinstance(value, str) and _matches(_number(value), hint) is True:
                extra = " (YAML reads 1e-5 as a string: write 1.0e-5)"
            raise FieldTypeError(f"{section}.{key}: expected {_describe(hint)}, got {value!r}{extra}")


def _number(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text
