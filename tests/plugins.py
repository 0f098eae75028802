"""Verifier plugins used by the tests through the dotted-path mechanism (`tests.plugins:Class`).

A random tiny model never solves a math problem, so the end-to-end tests use a verifier whose
verdicts a random model *can* earn: a completion passes when it contains the problem's
`needle` character. A problem without a `needle` cannot be verified (ok=None).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from verifiers.base import Verdict


class NeedleVerifier:
    name = "needle"
    gold_fields = ("needle",)

    def __init__(self, timeout: float = 1.0) -> None:
        self.timeout = timeout

    def verify(self, problem: Mapping[str, Any], completion: str) -> Verdict:
        needle = problem.get("needle")
        if not needle:
            return Verdict(ok=None, reason="problem has no needle")
        found = needle in completion
        # The answer is the completion's first character, so maj@k has votes to count.
        return Verdict(
            ok=found, reason="needle found" if found else "needle missing", answer=completion[:1] or None
        )


class RejectVerifier:
    """Every completion is wrong: a round with nothing to train on."""

    name = "reject"

    def verify(self, problem: Mapping[str, Any], completion: str) -> Verdict:
        return Verdict(ok=False, reason="rejected")
