"""The verifier contract: a verifier maps (problem, completion) to a Verdict.

``Verdict.ok`` is tri-state. ``True`` means provably correct, ``False`` means wrong
(including "no answer found", and a program that overruns its time in the code verifier), and
``None`` means *cannot verify* (for example an unparsable gold answer, or a symbolic check that
cannot finish within the math verifier's time limit). Downstream, ``None`` is dropped, never counted
as a pass.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping, Protocol, runtime_checkable


@dataclass(frozen=True)
class Verdict:
    """The outcome of one check."""

    ok: bool | None
    reason: str
    answer: str | None = None
    flags: tuple[str, ...] = ()  # observations that did not decide ``ok`` (e.g. a false step, flagged)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as written under ``verdict`` in record files (``flags`` only when set)."""
        out = asdict(self)
        flags = out.pop("flags")
        if flags:
            out["flags"] = list(flags)
        return out


@runtime_checkable
class Verifier(Protocol):
    """Anything with a ``name`` and a ``verify`` method is a verifier.

    Constructors take keyword options only (``timeout`` in seconds is the one every
    built-in verifier understands), so the registry can build any verifier the same way.

    A verifier should also declare the problem fields it checks against as a class attribute
    ``gold_fields`` (``("answer",)`` for math, ``("tests", "io")`` for code): prompt templates
    refuse to render those fields into the prompt (``sdp.sources.templates``). Optional; none
    declared means none guarded.

    ``light = True`` (optional class attribute) says a check takes milliseconds, is bounded, and cannot
    crash or hang the process it runs in: `sdp.stages.verify.Verification` then verifies the first
    2,048 such records in its own process before it starts a worker pool. Leave it unset for anything
    that runs untrusted code or may crash (the code verifier, most plugins); a subclass of the math
    verifier inherits it and sets ``light = False`` when its checks are not light.
    """

    name: str

    def verify(self, problem: Mapping[str, Any], completion: str) -> Verdict:
        """Judge ``completion`` against ``problem`` (the problem's record fields)."""
        ...
