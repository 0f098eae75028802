"""Multiple-choice options read from the prompt, so a letter and its option text can stand for each other.

``options(prompt)`` finds "(A) 12  (B) 15 ...", "A) 12", "A. 12" or "A: 12" options (at least two, lettered
from A in order) and returns ``{"A": "12", ...}``; empty when the prompt lists none.
"""

from __future__ import annotations

import functools
import re

_OPTION = re.compile(r"(?:^|(?<=\s))\(?([A-E])[).:][ \t]+([^\n]{1,120}?)[ \t]*(?=\s\(?[A-E][).:][ \t]|\n|$)", re.M)
_MAX_PROMPT = 8000  # options sit near the end of a prompt; longer ones are read from their tail


@functools.lru_cache(maxsize=4096)
def options(prompt: str) -> dict[str, str]:
    """The lettered options a prompt lists, or {} (letters must run A, B, C ... without gaps)."""
    found: dict[str, str] = {}
    for m in _OPTION.finditer(prompt[-_MAX_PROMPT:]):
        letter, text = m.group(1), m.group(2).strip().rstrip(",;")
        if letter == "A":
            found = {}  # a later list starts again
        if letter == chr(ord("A") + len(found)):
            found[letter] = text
    return found if len(found) >= 2 else {}
