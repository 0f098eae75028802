"""Name -> verifier lookup: built-ins, ``sdp.verifiers`` entry points, dotted paths.

Resolution order for a name: the built-in table below, then installed entry points of
the group ``sdp.verifiers``, then a dotted path ``package.module:Class``.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from importlib.metadata import entry_points
from typing import Any

from verifiers.base import Verifier

ENTRY_POINT_GROUP = "sdp.verifiers"

# Lazy "module:attr" strings so that importing the registry imports neither sympy nor
# the sandbox.
BUILTIN_VERIFIERS: dict[str, str] = {
    "math": "verifiers.math_verifier:MathVerifier",
    "code": "verifiers.code_verifier:CodeVerifier",
}


class UnknownVerifierError(KeyError):
    """Raised for a verifier name that no source knows."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


def _plugin_entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_verifiers() -> list[str]:
    """Every name that :func:`get_verifier` accepts (dotted paths aside)."""
    return sorted(set(BUILTIN_VERIFIERS) | set(_plugin_entry_points()))


def _load_target(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def resolve_verifier_class(name: str) -> Any:
    """Return the class (or factory) registered under ``name``."""
    if name in BUILTIN_VERIFIERS:
        return _load_target(BUILTIN_VERIFIERS[name])
    plugins = _plugin_entry_points()
    if name in plugins:
        return plugins[name].load()
    if ":" in name:
        try:
            return _load_target(name)
        except (ImportError, AttributeError) as exc:
            raise UnknownVerifierError(f"cannot import verifier {name!r}: {exc}") from exc
    raise UnknownVerifierError(
        f"unknown verifier {name!r}; known verifiers: {', '.join(available_verifiers())} "
        "(or give a dotted path 'package.module:Class')"
    )


def declared_gold_fields(target: Any) -> frozenset[str]:
    """The ``gold_fields`` a verifier class (or instance) declares; empty when it declares none."""
    fields = getattr(target, "gold_fields", ())
    if isinstance(fields, str) or not all(isinstance(f, str) for f in fields):
        raise TypeError(f"verifier {getattr(target, 'name', target)!r}: gold_fields must be a tuple of field names")
    return frozenset(fields)


@functools.lru_cache(maxsize=None)
def gold_fields(name: str | None = None) -> frozenset[str]:
    """Gold fields of verifier ``name``, or (None) of every registered verifier: built-ins and entry points.

    A plugin that cannot be imported is skipped here; using it fails with its own error.
    """
    if name is not None:
        return declared_gold_fields(resolve_verifier_class(name))
    out: set[str] = set()
    for registered in available_verifiers():
        try:
            out |= gold_fields(registered)
        except (ImportError, AttributeError, UnknownVerifierError):
            continue
    return frozenset(out)


def get_verifier(name: str, **options: Any) -> Verifier:
    """Build the verifier ``name`` with ``options`` (unknown options are not passed).

    Options a verifier's constructor does not accept are left out, so one
    ``timeout=`` can be given to every verifier in a mixed-domain batch.
    """
    target = resolve_verifier_class(name)
    if inspect.isclass(target) or callable(target):
        try:
            params = inspect.signature(target).parameters
        except (TypeError, ValueError):
            params = {}
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            accepted = options
        else:
            accepted = {k: v for k, v in options.items() if k in params}
        verifier = target(**accepted)
    else:
        verifier = target
    if not isinstance(verifier, Verifier):
        raise TypeError(f"verifier {name!r} has no 'name' and 'verify(problem, completion)'")
    return verifier
