"""STaR rationalization: the gold answer as a hint for problems the model did not solve.

A problem with a gold `answer` and no verified sample after sampling is sampled once more with
a hint prompt (`rationalize_template`, default `DEFAULT_HINT_TEMPLATE`: the prompt plus the
answer). Its completions are verified against the *original* problem (same verifier, same
gold) and, when kept, trained with the hint-free prompt: the sample records reference the
problem by `id` only and the select stage renders the prompt from the problem, so the hint
never reaches the SFT set.

The hint must not leak into a kept completion either. A rationalized completion is rejected
(`ok: false`, reason "quotes the hint") when, after casefolding and collapsing whitespace:

1. it contains the hint text verbatim (the rendered template minus the problem's prompt), or
2. it contains the word "hint", or
3. it contains the hint phrase: the last (up to four) words of the template text before
   `{answer}` followed by the gold answer (default template: "the final answer is 17").

Rule 2 is deliberately broad: a trace that talks about a hint teaches the model to refer to
a hint the SFT prompt does not have.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

DEFAULT_HINT_TEMPLATE = "{prompt}\n(Hint: the final answer is {answer}.)"
QUOTES_HINT = "quotes the hint"

_WS = re.compile(r"\s+")
_HINT_WORD = re.compile(r"\bhint\b")


def check_template(template: str) -> None:
    """Raise ValueError unless the template has `{prompt}` and `{answer}` (each exactly once)."""
    for key in ("{prompt}", "{answer}"):
        if template.count(key) != 1:
            raise ValueError(f"rationalize_template must contain {key} exactly once, got {template!r}")


def has_gold(problem: Mapping[str, Any]) -> bool:
    """Whether the problem carries a gold answer a hint can state (math-style `answer`)."""
    answer = problem.get("answer")
    return isinstance(answer, (str, int, float)) and not isinstance(answer, bool) and str(answer).strip() != ""


def _fill(template: str, prompt: str, answer: str) -> str:
    # str.replace, not str.format: prompts and answers carry braces (\boxed{...}, code).
    return template.replace("{answer}", answer).replace("{prompt}", prompt)


def hint_problem(problem: Mapping[str, Any], template: str = DEFAULT_HINT_TEMPLATE) -> dict[str, Any]:
    """The problem with its prompt replaced by the hint prompt (used for sampling only, never stored)."""
    return {**problem, "prompt": _fill(template, str(problem["prompt"]), str(problem["answer"]).strip())}


def _norm(text: str) -> str:
    return _WS.sub(" ", text).strip().casefold()


def hint_text(problem: Mapping[str, Any], template: str = DEFAULT_HINT_TEMPLATE) -> str:
    """The part of the hint prompt that is not the problem's prompt."""
    return _fill(template, "", str(problem["answer"]).strip()).strip()


def hint_phrase(problem: Mapping[str, Any], template: str = DEFAULT_HINT_TEMPLATE) -> str | None:
    """The last (up to 4) words of the template before `{answer}`, then the answer; None if there are none."""
    before = template.split("{answer}", 1)[0].split("{prompt}")[-1]
    words = before.replace("(", " ").split()[-4:]
    if not words:
        return None
    return _norm(" ".join(words) + " " + str(problem["answer"]).strip())


def quotes_hint(completion: str, problem: Mapping[str, Any], template: str = DEFAULT_HINT_TEMPLATE) -> bool:
    """Whether a rationalized completion leaks the hint (the three rules of the module docstring)."""
    text = _norm(completion)
    hint = _norm(hint_text(problem, template))
    if hint and hint in text:
        return True
    if _HINT_WORD.search(text):
        return True
    phrase = hint_phrase(problem, template)
    return phrase is not None and phrase in text


def flag_leak(record: Mapping[str, Any], problem: Mapping[str, Any], template: str) -> dict[str, Any]:
    """The verified rationalized record, its verdict turned to `ok: false` when the completion quotes the hint."""
    verdict = record["verdict"]
    if verdict.get("ok") is True and quotes_hint(record.get("completion", ""), problem, template):
        return {**record, "verdict": {**verdict, "ok": False, "reason": QUOTES_HINT}}
    return dict(record)


def rationalized_limit(kept_plain: int, share: float | None) -> int | None:
    """Most rationalized traces allowed beside `kept_plain` others so they are at most `share` of the SFT set.

    None (no cap) when share is None or >= 1. With r rationalized and p plain traces,
    r / (r + p) <= share  <=>  r <= share * p / (1 - share), rounded down.
    """
    if share is None or share >= 1:
        return None
    if share <= 0:
        return 0
    # A tiny epsilon keeps exact ratios (share 0.5, p 3 -> 3) from rounding below by float error.
    return int(share * kept_plain / (1 - share) + 1e-9)
