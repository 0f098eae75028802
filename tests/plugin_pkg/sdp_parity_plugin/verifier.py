"""A verifier for a toy domain, written the way a third party would write one.

Problem records carry ``n`` (an integer); a completion passes when its last word is the
right parity, "even" or "odd". Only the ``verifiers.base`` contract is used.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from verifiers.base import Verdict


class ParityVerifier:
    name = "parity"

    def __init__(self, *, timeout: float = 1.0) -> None:
        self.timeout = timeout  # nothing here can run long; accepted for the common option

    def verify(self, problem: Mapping[str, Any], completion: str) -> Verdict:
        n = problem.get("n")
        if not isinstance(n, int) or isinstance(n, bool):
            return Verdict(None, "problem has no integer 'n'")
        words = re.findall(r"[a-z]+", completion.lower())
        if not words or words[-1] not in ("even", "odd"):
            return Verdict(False, "no parity stated")
        expected = "even" if n % 2 == 0 else "odd"
        ok = words[-1] == expected
        return Verdict(ok, "right parity" if ok else "wrong parity", words[-1])
