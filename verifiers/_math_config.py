"""The math verifier's policy choices, as one frozen config (defaults: the strict ones).

A verifier that filters training data teaches the model whatever it accepts, so each default
is the choice that accepts no wrong answer that we know of; turning one off trades that for
recall on data you have audited (``python -m verifiers.compare``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Literal


STEP_MODES = ("reject", "flag", "off")


@dataclass(frozen=True)
class MathVerifyConfig:
    """Policy options of :class:`verifiers.math_verifier.MathVerifier`."""

    last_sentence: bool = field(
        default=True,
        metadata={
            "help": "Read a completion with no final-answer marker by its last sentence ('So he has 15 "
            "marbles.'), and let a boxed equation value inside the reasoning ('4^2 = \\boxed{16}') lose to "
            "a later concluding sentence. Numeric golds only. False: such completions have no answer."
        },
    )
    exact_rationals: bool = field(
        default=True,
        metadata={
            "help": "Integer, rational and decimal golds need the exact value: 2000000.5 is wrong for "
            "2000000, 0.3333333333 for 1/3, 12.5000001 for 12.5 (2.5 is right for 5/2). False: the "
            "old rule, any decimal within rel_tol of the gold passes."
        },
    )
    round_irrational: bool = field(
        default=True,
        metadata={
            "help": "An irrational exact answer (\\pi, \\sqrt{2}) matches a decimal gold when it rounds to "
            "the gold's digits (\\pi for 3.14). Rational answers never round: 1/3 is not 0.33."
        },
    )
    round_decimal_answers: bool = field(
        default=False,
        metadata={
            "help": "A decimal answer written with more digits than a decimal gold matches when it rounds "
            "to the gold (3.1416 for 3.14). Off by default: a decimal gold is often an exact value, and "
            "then 12.49 or 12.5000001 is a wrong answer for 12.5."
        },
    )
    convert_units: bool = field(
        default=True,
        metadata={
            "help": "An answer in another unit of the gold's dimension is converted exactly before it is "
            "compared (500 cm for 5 m, 90 minutes for 1.5 hours, 2 hours 30 minutes for 150 minutes); units "
            "of different dimensions (cm for cm^2, kg for m) are refused. False: any other unit is refused."
        },
    )
    think_scratch: bool = field(
        default=True,
        metadata={
            "help": "A <think>...</think> block is scratch space: only the text after the last closed block "
            "can state the answer, and a block never closed states nothing. False: think tags are plain text."
        },
    )
    withdrawals: bool = field(
        default=True,
        metadata={
            "help": "Statements taken back or framed as not the answer do not count: before a withdrawal "
            "('wait', 'that's wrong', 'actually', 'oops'), hypothetical ('one might think the answer is 16', "
            "'a common mistake is'), or echoed as a format example ('e.g. \\boxed{5}'). False: every "
            "statement counts and the last one wins."
        },
    )
    conflicting_answers: bool = field(
        default=True,
        metadata={
            "help": "Committed statements that disagree (two different boxes, two different #### lines, a "
            "final-answer section and a trailing check concluding another value) fail the trace. False: the "
            "last statement wins."
        },
    )
    step_check: Literal["reject", "flag", "off"] = field(
        default="reject",
        metadata={
            "help": "Every equality between plain numbers in the committed text (3 * 4 = 12, <<48/2=24>>) "
            "is evaluated exactly. 'reject': a false one fails the trace; 'flag': the verdict keeps its "
            "ok and carries the flag 'false step: ...'; 'off': no step check."
        },
    )
    rel_tol: float = field(
        default=1e-6,
        metadata={
            "help": "Relative tolerance for a decimal answer against an irrational or symbolic gold "
            "(3.14159265 for \\pi). In [0, 0.1)."
        },
    )

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("bool", bool) and not isinstance(value, bool):
                raise TypeError(f"MathVerifyConfig.{f.name} must be true or false, got {value!r}")
        if self.step_check not in STEP_MODES:
            raise ValueError(f"MathVerifyConfig.step_check must be one of {STEP_MODES}, got {self.step_check!r}")
        if isinstance(self.rel_tol, bool) or not isinstance(self.rel_tol, (int, float)):
            raise TypeError(f"MathVerifyConfig.rel_tol must be a number, got {self.rel_tol!r}")
        if not (math.isfinite(self.rel_tol) and 0 <= self.rel_tol < 0.1):
            raise ValueError(f"MathVerifyConfig.rel_tol must be in [0, 0.1), got {self.rel_tol!r}")

    @classmethod
    def from_mapping(cls, options: dict[str, Any]) -> MathVerifyConfig:
        """Build from a plain mapping (a YAML/JSON section), naming any unknown key."""
        options = yaml_options(options)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown math verifier option(s) {unknown}; known: {sorted(known)}")
        return cls(**options)


def yaml_options(options: dict[str, Any]) -> dict[str, Any]:
    """The section with YAML's reading of a bare ``off`` undone: ``step_check: off`` is the mode, not false."""
    if options.get("step_check") is False:
        return {**options, "step_check": "off"}
    return dict(options)
