"""Which stated answer a completion commits to (the commitment rules of the ``math`` verifier).

The last statement is not always the answer a completion commits to. On top of the
extraction in ``_math_extract`` (which finds every final-answer statement), these rules apply,
each documented with its reason in ``docs/verifiers.md``:

1. **Reasoning blocks are scratch**: only the text after the last closed ``</think>`` counts; a
   ``<think>`` never closed commits to nothing (the model never left its scratch space).
2. **Hypothetical statements do not count**: a statement whose own sentence frames it as not
   the answer ("one might think the answer is 16", "a common mistake is ...", "I first wrote
   \\boxed{9}") is dropped.
3. **Echoed format examples do not count**: a box quoted or introduced as an example
   ("e.g. \\boxed{5}", "`\\boxed{N}`", "in the format \\boxed{42}").
4. **A withdrawal withdraws what came before it**: after "wait", "that's wrong", "oops",
   "actually", "correction" ..., only statements after it count; none after it: no answer.
5. **Conflicting final answers fail**: the committed statements (those of the final-answer
   section when there is one, else all; boxes that are only an equation's value aside) must
   agree, and a trailing "Verification"/"Check" must not conclude a different value.

All scans are linear (no backtracking regex over model output); cue regexes look at one
sentence (at most ``_CONTEXT`` characters) before or after a statement.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from verifiers._math_extract import WINDOW, _Statement, final_of, last_sentence_answer, statements
from verifiers._math_steps import BOUNDARY

MAX_COMMITTED = 16  # statements before the final one checked for conflicts (a longer list is still read)
_CONTEXT = 160  # how far back a statement's own sentence is searched for a cue
_THINK_OPEN = re.compile(r"<think(?:ing)?>", re.I)
_THINK_CLOSE = re.compile(r"</think(?:ing)?>", re.I)
# A statement framed as not the answer, said earlier in its own sentence.
_HYPOTHETICAL = re.compile(
    r"\b(?:might|may|could|would)\s+(?:\w+\s+)?(?:think|say|guess|assume|expect|conclude|answer)\b"
    r"|\btempt(?:ing|ed)\b|\bcommon\s+(?:mistake|error|pitfall|trap|misconception)\b|\bmistaken(?:ly)?\b"
    r"|\bnaive(?:ly)?\b|\b(?:wrong|incorrect|erroneous)\s+(?:answer|result|value|guess)\b|\b(?:wrong|incorrect|erroneous)ly\b"
    r"|\bsuppose\b|\bif\s+(?:we|you|one|i)\s+(?:had|were|forgot|ignore[ds]?|did\s*n[o']t|mis\w+)\b"
    r"|\b(?:i|we)\s+(?:thought|guessed)\b|\b(?:i|we)\s+(?:first|initially|originally)\s+(?:\w+\s+)?(?:thought|guessed|assumed|wrote|believed|got)\b"
    r"|\b(?:first|initial|earlier|previous)\s+(?:thought|guess|attempt|draft|answer)\b|\binitially\b|\bat\s+first\b"
    r"|\bnot\s+(?:the\s+(?:final\s+)?answer|correct)\b|\b(?:answer|result|it)\s+(?:isn'?t|is\s+not|wasn'?t|was\s+not)\b",
    re.I,
)
# A box introduced as an example of the format, not as the answer.
_ECHO = re.compile(
    r"(?:\be\.g\.|\bfor\s+(?:example|instance)\b|\bsuch\s+as\b|\blike\s+(?:this|so)\b)[^.\n]*$"
    r"|\b(?:format|form|template)\s*:?\s*[`\"']?\s*\$?\s*$",
    re.I,
)
_QUOTED = re.compile(r"[`\"'\u201c\u2018]\s*\$?\s*$")
# A withdrawal: what was stated before it is taken back.
_WITHDRAWAL = re.compile(
    r"\bwait\b|\bhmm+\b|\boops\b|\bactually\b|\bcorrection\b|\bscratch\s+that\b|\bon\s+(?:second\s+thought|reflection)\b"
    r"|\b(?:that|this|it)(?:'s|\s+is|\s+was)\s+(?:wrong|incorrect|not\s+right|a\s+mistake|an\s+error)\b"
    r"|\b(?:is|was)\s+(?:wrong|incorrect)\b|\bi\s+made\s+(?:a|an)\s+(?:mistake|error)\b|\bmy\s+(?:mistake|bad)\b"
    r"|\bno,?\s+that\b|\bcan'?t\s+be\s+right\b|\blet\s+me\s+(?:re-?check|recalculate|recompute|redo|reconsider|correct)\b",
    re.I,
)
# Where a final-answer section starts: earlier boxes are intermediate results.
_FINAL_SECTION = re.compile(r"\bfinal\s+answer\b|\*\*answer\*\*|^#+\s*answer\b", re.I | re.M)
_CHECK_SECTION = re.compile(r"\b(?:verification|verify(?:ing)?|check(?:ing)?|double-check(?:ing)?)\b", re.I)
# Where the sentence (or clause) holding a statement starts: "One might think 16, but it is 18".
_SENTENCE_START = re.compile(r"[.!?;]\s|\n|,\s*(?:so|thus|therefore|hence|but|which\s+means)\b", re.I)

# Substrings every match of the regex above contains (lower case): a cheap test before the regex.
_WITHDRAWAL_KEYS = (
    "wait", "hmm", "oops", "actually", "correction", "scratch", "second thought", "reflection", "wrong",
    "incorrect", "not right", "mistake", "error", "my bad", "no that", "no, that", "can't", "cant", "let me",
)
_HYPOTHETICAL_KEYS = (
    "might", "may ", "could", "would", "tempt", "common", "mistaken", "naive", "incorrect", "wrong", "erroneous",
    "suppose", "if ", "thought", "guessed", "first", "initial", "earlier", "previous", "not", "isn", "wasn",
)
_ECHO_KEYS = ("e.g.", "for example", "for instance", "such as", "like this", "like so", "form", "template", "`", '"', "'", "\u201c", "\u2018")
UNCLOSED = "reasoning block never closed: no committed answer"


class Commitment(NamedTuple):
    """What a completion commits to: its answer (None: none), and the other committed statements
    and trailing check values the verifier must find equal to it (else: conflicting answers)."""

    answer: str | None
    others: tuple[str, ...] = ()
    reason: str | None = None  # why there is no answer, when there is a specific one
    text: str = ""  # the committed text (after any reasoning block), for the step check


def committed_text(completion: str, *, think_scratch: bool = True) -> str | None:
    """The part of ``completion`` that can commit to anything; None for an unclosed reasoning block."""
    if not think_scratch:
        return completion
    closes = list(_THINK_CLOSE.finditer(completion))
    after = closes[-1].end() if closes else 0
    if _THINK_OPEN.search(completion, after):
        return None  # "<think> ..." never closed: still thinking when it stopped
    return completion[after:]


def _sentence_before(text: str, start: int) -> str:
    window = text[max(0, start - _CONTEXT) : start]
    cuts = [m.end() for m in _SENTENCE_START.finditer(window)]
    return window[cuts[-1] :] if cuts else window


def commit(completion: str, *, plain: bool, think_scratch: bool = True, withdrawals: bool = True) -> Commitment:
    """Apply the commitment rules (module docstring) to ``completion``."""
    text = committed_text(completion, think_scratch=think_scratch)
    if text is None:
        return Commitment(None, reason=UNCLOSED)
    if len(text) > WINDOW:
        text = text[-WINDOW:]
        cut = BOUNDARY.search(text, 0, 2000)  # from a line or sentence end: no half-cut statement or step
        text = text[cut.end() :] if cut else text
    found = statements(text)
    if found is None:
        return Commitment(None, text=text)
    if withdrawals:
        low = text.lower()
        cue = None
        if any(key in low for key in _WITHDRAWAL_KEYS):  # most completions hold no cue: skip the regex
            for cue in _WITHDRAWAL.finditer(text):
                pass
        hypothetical = any(key in low for key in _HYPOTHETICAL_KEYS)
        echo = any(key in low for key in _ECHO_KEYS)
        if cue is not None:
            # a cue inside a statement ("the answer is actually 5") does not withdraw it
            found = [s for s in found if s.end > cue.start()]
        kept: list[_Statement] = []
        for s in reversed(found):  # the last MAX_COMMITTED unframed ones: the cost stays bounded
            if len(kept) > MAX_COMMITTED:
                break
            if not (hypothetical or echo) or not _framed(text, s, hypothetical, echo):
                kept.append(s)
        found = kept[::-1]
        if cue is not None and not found:
            later = last_sentence_answer(text[cue.end() :]) if plain else None
            return Commitment(later, text=text)
    else:
        found = found[-MAX_COMMITTED - 1 :]
    answer = final_of(text, found, plain=plain)
    if answer is None or not found:
        return Commitment(answer, text=text)
    final = found[-1]
    # only a section heading near or after the first kept statement can split them
    sections = [m.start() for m in _FINAL_SECTION.finditer(text, max(0, found[0].start - _CONTEXT), final.end)]
    section = sections[-1] if sections else 0
    others = [s.text for s in found[:-1] if s.start >= section and not s.inline and s.text != answer]
    if answer != final.text:  # a concluding sentence after an equation's box: the box is not a claim
        others = [o for o in others if o != final.text]
    check = _CHECK_SECTION.search(text, final.end)
    if check is not None:
        restated = last_sentence_answer(text[check.end() :])
        if restated is not None:
            others.append(restated)
    return Commitment(answer, tuple(dict.fromkeys(others)), text=text)


def _framed(text: str, s: _Statement, hypothetical: bool = True, echo: bool = True) -> bool:
    """Whether a statement's own sentence frames it as hypothetical or as a format example."""
    before = _sentence_before(text, s.start)
    if hypothetical and _HYPOTHETICAL.search(before):
        return True
    return echo and bool(_ECHO.search(before) or _QUOTED.search(before))
