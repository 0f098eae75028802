"""Name -> verifier lookup: built-ins, ``sdp.verifiers`` entry points, dotted paths.

Resolution order for a name: the built-in table below, then installed entry points of
the group ``sdp.verifiers``, then a dotted path ``package.module:Class``.
"""

from __future__ import annotations

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
