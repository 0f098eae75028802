"""The ``math`` verifier: final-answer equivalence, proved exactly or not accepted.

Pipeline per check: extract the final answer (``_math_extract``: the last final-answer
statement wins), normalise and parse both answers into a small AST (``_math_normalize``,
``_math_parse``; cached), then compare: structure by structure (sets unordered, tuples
ordered, interval ends, matrices), each scalar pair first by exact rational arithmetic
in-process (``_math_eval``), then a float evaluation that can only *reject*, and only what is
left (surds, symbolic identities) by sympy in a killable child process (``_math_sympy``).
Policy choices (the last-sentence rule, exactness) are a frozen ``MathVerifyConfig``.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import time
from fractions import Fraction
from typing import Any, Mapping

from verifiers._math_config import MathVerifyConfig
from verifiers._math_choice import options
from verifiers._math_commit import Commitment, commit
from verifiers._math_extract import last_sentence_answer
from verifiers._math_steps import FALSE_STEP, first_false_step
from verifiers._math_compare import _STRUCTURES, _apply_units, _Check, _Undecided, label_conflict
from verifiers._math_eval import exact, symbols
from verifiers._math_normalize import ParseError, choice_letters, clean, hedge_signal
from verifiers._math_parse import Node, parse_answer
from verifiers._math_sympy import SympyWorker, WorkerTimeout
from verifiers.base import Verdict

HEDGE = "several answers given where one is expected"
TIMEOUT = "timeout: cannot verify within the time limit"
NO_ANSWER = "no final answer found"
CONFLICT = "conflicting final answers"
MAX_TREE_DEPTH = 120  # far beyond any real answer; keeps every recursive walk of the tree shallow
_LETTER = re.compile(r"[A-E]")
_SENTENCE = re.compile(r"(?<![\\a-zA-Z])[a-zA-Z]{3,}\s+[a-zA-Z]{2,}")  # two words, not \commands

__all__ = ["CONFLICT", "FALSE_STEP", "HEDGE", "NO_ANSWER", "TIMEOUT", "MathVerifier", "MathVerifyConfig"]


def _depth(node: Node) -> int:
    """The tree's depth, walked without recursion."""
    deepest, stack = 0, [(node, 1)]
    while stack:
        item, d = stack.pop()
        deepest = max(deepest, d)
        stack.extend((c, d + 1) for c in item if isinstance(c, tuple))
    return deepest


@functools.lru_cache(maxsize=65536)
def _parse(answer: str) -> tuple[Node, tuple[tuple[str, bool], ...]] | ParseError:
    try:
        node, flags = parse_answer(answer)
    except RecursionError:
        error = "answer nested too deeply"
    except ParseError as exc:
        error = str(exc)
    except (ValueError, ArithmeticError) as exc:  # a literal the grammar let through
        error = f"{type(exc).__name__}: {exc}"
    else:
        if _depth(node) <= MAX_TREE_DEPTH:
            return node, tuple(sorted(flags.items()))
        # "x x x ... x" (400 factors) parses flat but nests as deep as it is long; the
        # comparison recurses over the tree, so such a tree is refused here
        error = "answer nested too deeply"
    # A fresh exception: a cached one would pin its traceback's frames for the cache's life.
    return ParseError(error)


class MathVerifier:
    """Checks the completion's final answer against ``problem["answer"]``.

    Args:
        timeout: seconds allowed per check (the symbolic part is killed past it; the verdict
            is then ``ok=None``, cannot verify).
        rel_tol: shorthand for ``config.rel_tol`` (decimal answers against irrational golds).
        config: the policy options (:class:`MathVerifyConfig`); default: the strict ones.
    """

    name = "math"
    gold_fields = ("answer",)  # what the template guard keeps out of prompts
    light = True  # milliseconds per check, bounded in-process (sympy in its own child): no pool for small inputs

    def __init__(
        self, *, timeout: float = 1.0, rel_tol: float | None = None, config: MathVerifyConfig | None = None
    ) -> None:
        config = config if config is not None else MathVerifyConfig()
        if not isinstance(config, MathVerifyConfig):
            raise TypeError(f"config must be a MathVerifyConfig, got {type(config).__name__}")
        if rel_tol is not None:
            config = dataclasses.replace(config, rel_tol=rel_tol)
        self.timeout = float(timeout)
        self.config = config
        self._worker: SympyWorker | None = None

    @property
    def rel_tol(self) -> float:
        return self.config.rel_tol

    def __getstate__(self) -> dict[str, Any]:
        return {"timeout": self.timeout, "config": self.config, "_worker": None}

    def warmup(self) -> None:
        """Start the sympy child now rather than at the first hard comparison."""
        self._sympy().call(("equal", ("num", Fraction(1), False), ("sym", "x"), None), 60.0)

    def close(self) -> None:
        """Stop the sympy child process (it restarts on demand)."""
        if self._worker is not None:
            self._worker.close()

    def _sympy(self) -> SympyWorker:
        if self._worker is None:
            self._worker = SympyWorker()
        return self._worker

    def verify(self, problem: Mapping[str, Any], completion: str) -> Verdict:
        """Judge ``completion``; never raises for bad model output."""
        gold_raw = problem.get("answer")
        if isinstance(gold_raw, (int, float)) and not isinstance(gold_raw, bool):
            gold_raw = str(gold_raw)
        if not isinstance(gold_raw, str) or not gold_raw.strip():
            return Verdict(None, "problem has no gold answer")
        if not isinstance(completion, str):
            return Verdict(False, "completion is not a string")
        worker = self._sympy()
        if not worker.started:  # no liveness poll per check: `call` replaces a dead child itself
            worker.start()  # warms up in the background; most checks never need it
        try:
            gold_letter = _gold_choice(gold_raw)
        except ParseError as exc:
            return Verdict(None, f"cannot parse gold answer: {exc}")
        if gold_letter is not None:
            return self._verify_choice(gold_letter, completion, _prompt_options(problem))
        gold = _parse(gold_raw)
        if isinstance(gold, ParseError):
            return Verdict(None, f"cannot parse gold answer: {gold}")
        plain = self.config.last_sentence and _numeric(gold[0])
        committed = self._commit(completion, plain=plain)
        pred_raw = committed.answer
        if pred_raw is None:
            return Verdict(False, committed.reason or NO_ANSWER)
        listed = _prompt_options(problem)
        letter = _gold_choice(pred_raw) if listed else None
        if letter is not None:
            if letter not in listed:
                return Verdict(False, f"choice {letter} is not among the options", pred_raw)
            pred_raw = listed[letter]  # "(C)" stands for the option's text
        if hedge_signal(pred_raw):
            return Verdict(False, HEDGE, pred_raw)
        pred = _parse(pred_raw)
        if plain and _SENTENCE.search(pred_raw) and (isinstance(pred, ParseError) or symbols(pred[0])):
            # "**Answer:** Janet makes $18 a day.": a sentence after the marker states the number
            stated = last_sentence_answer(pred_raw)
            if stated is not None:
                pred_raw, pred = stated, _parse(stated)
        if isinstance(pred, ParseError):
            return Verdict(False, f"unparsable answer: {pred}", pred_raw)
        if dict(pred[1]).get("tentative"):
            return Verdict(False, HEDGE, pred_raw)
        convert = self.config.convert_units
        label = label_conflict(gold, pred, pred_raw, convert)
        if label is not None:
            return Verdict(False, label, pred_raw)
        check = _Check(self, time.monotonic() + self.timeout)
        g, p = _apply_units(gold, pred, pred_raw, convert)
        try:
            if p[0] == "list" and g[0] not in ("list", "set", "tuple", "interval", "union", "matrix"):
                return Verdict(False, HEDGE, pred_raw)
            ok = check.match(g, p)
            conflict = self._conflict(check, pred, committed.others) if ok else None
        except WorkerTimeout:
            return Verdict(None, TIMEOUT, pred_raw)
        except _Undecided as exc:
            return Verdict(False, str(exc), pred_raw)
        if time.monotonic() > check.deadline:
            return Verdict(None, TIMEOUT, pred_raw)
        if conflict is not None:
            return Verdict(False, f"{CONFLICT}: {pred_raw!r} and {conflict!r}", pred_raw)
        if not ok:
            return Verdict(False, "not equivalent", pred_raw)
        return self._steps(Verdict(True, "equivalent", pred_raw), committed.text)

    def _commit(self, completion: str, *, plain: bool) -> Commitment:
        cfg = self.config
        return commit(completion, plain=plain, think_scratch=cfg.think_scratch, withdrawals=cfg.withdrawals)

    def _conflict(self, check: _Check, pred: tuple, others: tuple[str, ...]) -> str | None:
        """The first other committed statement that states a different value, if any."""
        if not self.config.conflicting_answers:
            return None
        for other in others:
            parsed = _parse(other)
            if isinstance(parsed, ParseError):
                continue  # a statement we cannot read cannot be shown to differ
            if label_conflict(pred, parsed, other, self.config.convert_units) is not None:
                return other  # "5 m" then "5 cm": not one value
            a, b = _apply_units(pred, parsed, "", self.config.convert_units)
            if not (check.match(a, b) or check.match(b, a)):
                return other
        return None

    def _steps(self, verdict: Verdict, text: str) -> Verdict:
        """Apply the step check to a passing verdict: reject, flag or leave it (``config.step_check``)."""
        if self.config.step_check == "off":
            return verdict
        false = first_false_step(text)
        if false is None:
            return verdict
        note = f"{FALSE_STEP}: {false}"
        if self.config.step_check == "flag":
            return dataclasses.replace(verdict, flags=(note,))
        return Verdict(False, note, verdict.answer)

    def _verify_choice(self, gold_letter: str, completion: str, listed: dict[str, str]) -> Verdict:
        committed = self._commit(completion, plain=False)
        pred_raw = committed.answer
        if pred_raw is None:
            return Verdict(False, committed.reason or NO_ANSWER)
        named = self._option_named(pred_raw, listed)
        if named is not None:
            if named != gold_letter:
                return Verdict(False, "not equivalent", pred_raw)
            return self._steps(Verdict(True, "equivalent", pred_raw), committed.text)
        try:
            letters = choice_letters(pred_raw)
        except ParseError as exc:
            return Verdict(False, f"unparsable answer: {exc}", pred_raw)
        if len(letters) > 1 or (letters and hedge_signal(pred_raw)):
            return Verdict(False, HEDGE, pred_raw)
        if not letters:
            return Verdict(False, "expected a choice letter", pred_raw)
        if letters[0] != gold_letter:
            return Verdict(False, "not equivalent", pred_raw)
        if self.config.conflicting_answers:
            for other in committed.others:
                try:
                    named = choice_letters(other)
                except ParseError:
                    continue
                if named and named != letters:
                    return Verdict(False, f"{CONFLICT}: {pred_raw!r} and {other!r}", pred_raw)
        return self._steps(Verdict(True, "equivalent", pred_raw), committed.text)


    def _option_named(self, pred_raw: str, listed: dict[str, str]) -> str | None:
        """The letter whose option text the answer states ("12" for "(C) 12"), when exactly one is."""
        if not listed or _gold_choice(pred_raw) is not None or re.match(r"\s*\(?[A-E]\)", pred_raw):
            return None
        pred = _parse(pred_raw)
        if isinstance(pred, ParseError):
            return None
        check = _Check(self, time.monotonic() + self.timeout)
        hits = []
        for letter, text in listed.items():
            option = _parse(text)
            if isinstance(option, ParseError):
                continue
            try:
                if label_conflict(option, pred, pred_raw, self.config.convert_units) is None and check.match(
                    *_apply_units(option, pred, pred_raw, self.config.convert_units)
                ):
                    hits.append(letter)
            except (WorkerTimeout, _Undecided):
                return None
        return hits[0] if len(hits) == 1 else None


def _prompt_options(problem: Mapping[str, Any]) -> dict[str, str]:
    prompt = problem.get("prompt")
    return options(prompt) if isinstance(prompt, str) else {}


def _numeric(node: Node) -> bool:
    """Whether a gold is one number (so a plain-number ending can state it)."""
    if node[0] == "pct":
        node = node[1]
    return node[0] not in _STRUCTURES and exact(node) is not None


def _gold_choice(gold: str) -> str | None:
    if not _LETTER.search(gold):
        return None  # no capital A-E: not a choice (decided without normalising)
    s, _ = clean(gold)
    m = re.fullmatch(r"\(?([A-E])\)?", s.strip())
    return m.group(1) if m else None
