"""Find the final answer in a chain-of-thought completion.

Rule: the completion's *last* final-answer statement wins, whatever its form: a
``\\boxed{...}``/``\\fbox{...}`` (boxes side by side, or one per line, form one statement, so
``\\boxed{2} or \\boxed{3}`` reads as the hedge it is), "the answer is X", "Final answer: X",
``**Answer:** X``, or a GSM8K ``#### X`` line. Empty boxes and echoed instructions ("put the
answer in \\boxed{}") are not statements. With ``plain=True`` (numeric golds, the
last-sentence rule on) two more rules apply: a box that is only the value of an equation in
the reasoning (``4^2 = \\boxed{16}``) loses to a later concluding sentence ("so the total is
48"), and a completion with no statement at all is read by its last sentence ("So he has 15
marbles."). All scans are linear in the completion's length (no backtracking regex over
model output).
"""

from __future__ import annotations

import json
import re
from typing import NamedTuple

# Final answers sit at the end; a megabyte completion is only scanned this far back.
WINDOW = 20_000
_TAIL = 4000  # markers, #### lines and sentences are looked for this far back
_MAX_GROUP = 20  # boxes joined into one statement
_MAX_STATEMENTS = 32  # statements of one kind kept, the last ones (the commitment rules look at fewer)
_BOX_COMMANDS = ("\\boxed", "\\fbox")
_BOX_START = re.compile(r"\\(?:boxed|fbox)")
_BOX_WORD = re.compile(r"boxed|fbox", re.IGNORECASE)  # with or without its backslash
_BARE_ARG = re.compile(r"\s*([^\s$]+)")
_BRACES = re.compile(r"\\.|[{}]", re.DOTALL)
# No two adjacent quantifiers over the same characters: model output must not backtrack.
_MARKER = re.compile(
    r"(?:\*\*|__)?\b(?:final\s+answer|answer)(?:[ \t]+to[ \t]+(?:the|this)[ \t]+(?:problem|question))?"
    r"[ \t]*(?:(?:\*\*|__)[ \t]*)?(?:is\b|:)[ \t]*(?:(?:\*\*|__)[ \t]*)?:?",
    re.IGNORECASE,
)
# Words that may stand between boxes of one statement ("2, 3", "2 or perhaps 3", a box per line).
_JOIN_WORDS = {"or", "and", "perhaps", "possibly", "maybe", "alternatively", "else", "also", "even"}
_TENTATIVE = {"perhaps", "possibly", "maybe", "alternatively"}
_JOIN_NOISE = re.compile(r"\\(?:text|mbox|textnormal)\s*\{|\\(?:quad|qquad)|\\[,;! ]|[{}$,;.:\-*\u2022]|\(\w\)|\d+[.)]")
# A box holding nothing or a placeholder ("put the answer in \boxed{}"): an echoed instruction.
# Matched against the content with its whitespace collapsed (see _is_placeholder).
_PLACEHOLDER = re.compile(
    r"(?:\\text\{ ?)?(?:(?:your|the|final|my) )*(?:answer|result|number|\.\.\.|\\ldots|\\cdots|\?+)?"
    r"(?: here)? ?\}?",
    re.IGNORECASE,
)
# What a marker's content must not start with: "the answer is correct", "answer: see below".
_NOT_AN_ANSWER = re.compile(
    r"(?:correct|right|wrong|incorrect|above|below|as follows|the following|given|in\b|within|"
    r"inside|to be|that\b|required|boxed|consistent|verified|confirmed|reasonable|clear|obvious|"
    r"shown|the same|unchanged|not\s+(?:correct|right|possible|defined)|$)",
    re.IGNORECASE,
)
_FILLER = re.compile(
    r"^(?:(?:indeed|therefore|thus|then|simply|just|now|clearly|actually|still|exactly|so|hence)\b[\s,]*)+",
    re.IGNORECASE,
)
# "15, not 16", "15 (not 16)", "15 rather than 16": a negated alternative is not a second answer.
_NEGATED = re.compile(
    r"\((?:and\s+)?not\s[^()]*\)|(?<![\s,])(?:,\s*|\s+)(?:and\s+)?(?:not|rather than|instead of)\s[^,;]*$",
    re.IGNORECASE,
)
_CUE = re.compile(r"\b(?:so|thus|therefore|hence|total|altogether|in all|overall|finally|sum)\b", re.I)
_CLAUSE_SPLIT = re.compile(
    r"[,;:]\s+|\s(?=(?:so|thus|therefore|hence|which|giving|making|meaning|then)\b)", re.I
)
# "the answer is" in other languages (Chinese, Spanish, French, German, Portuguese, Russian)
_MARKER_INTL = re.compile(
    r"(?:最终)?答案(?:是|为|:|：)[ \t]*|\b(?:la\s+)?respuesta(?:\s+final)?\s+es\b[ \t]*:?"
    r"|\bla\s+réponse(?:\s+finale)?\s+est\b[ \t]*:?|\bdie\s+(?:endgültige\s+)?antwort\s+(?:ist|lautet)\b[ \t]*:?"
    r"|\ba\s+resposta(?:\s+final)?\s+é\b[ \t]*:?|ответ[ \t]*:[ \t]*",
    re.IGNORECASE,
)
# {"answer": 42} / {"final_answer": "\\frac{1}{2}"}: an answer given as JSON
_JSON_ANSWER = re.compile(
    r'"(?:final_?answer|answer|result)"\s*:\s*(?:"((?:[^"\\\n]|\\.){1,200})"|(-?\d[\d.,eE+\-/]{0,40}))', re.I
)
# a fenced block holding only a number (tool output, "```\n42\n```")
_CODE_VALUE = re.compile(r"```[a-z]*[ \t]*\n?[ \t]*(\$?-?\d[\d,]*(?:\.\d+)?(?:/\d+)?)[ \t]*\n?```")
# A Markdown header after "####" ("#### Step 2: add", "#### Solution") is not a GSM8K answer line.
_HEADER = re.compile(r"(?:step|part|solution|final|answer|problem|question|case|method|verification|check|summary)\b", re.I)
_NUMBER = re.compile(r"(?<![\w.])-?(?:\\?\$)?\d(?:\d|,\d{3})*(?:\.\d+)?(?:\s*\\?%)?(?![\w])")


class _Statement(NamedTuple):
    start: int
    end: int
    text: str
    inline: bool = False  # a box that is the value of an equation in the reasoning


def _box_spans(text: str) -> list[tuple[int, int, str]] | None:
    """(start, end, content) of every balanced box, scanning once left to right.

    None when a box is left unclosed: the completion was cut off before its answer closed.
    """
    spans = []
    i = 0
    while True:
        found = _BOX_START.search(text, i)  # one regex, not a find per command: linear overall
        if found is None:
            return spans
        start, j = found.start(), found.end()
        while j < len(text) and text[j] == " ":
            j += 1
        if j >= len(text) or text[j] != "{":
            # "\boxed 5" (no braces): the argument is the next token
            m = _BARE_ARG.match(text, j)
            if m and j != found.end():
                spans.append((start, m.end(), m.group(1)))
            i = j
            continue
        depth, k = 0, -1
        for m in _BRACES.finditer(text, j):  # jumps between braces, not character by character
            if m.group() == "{":
                depth += 1
            elif m.group() == "}":
                depth -= 1
                if depth == 0:
                    k = m.start()
                    break
        if k < 0:
            return None
        spans.append((start, k + 1, text[j + 1 : k]))
        i = k + 1


def _is_placeholder(content: str) -> bool:
    if len(content) > 80:
        return False
    return bool(_PLACEHOLDER.fullmatch(" ".join(content.split())))


def _joiner(between: str) -> str | None:
    """The separator for two boxes of one statement ("," or "or perhaps"), else None."""
    if len(between) > 60 or between.count("\n") > 2:
        return None
    words = _JOIN_NOISE.sub(" ", between).lower().split()
    if any(w not in _JOIN_WORDS for w in words):
        return None
    return " or perhaps " if _TENTATIVE & set(words) else ", "


def _box_statements(text: str, spans: list[tuple[int, int, str]]) -> list[_Statement]:
    """Every box statement, in order: each box with the boxes joined to it (at most ``_MAX_GROUP``:
    a longer list is a hedge whichever boxes it keeps)."""
    kept = [s for s in spans if not _is_placeholder(s[2])]
    found: list[_Statement] = []
    end = len(kept)
    while end > 0 and len(found) < _MAX_STATEMENTS:  # the last ones: earlier boxes decide nothing
        group, seps = [kept[end - 1]], []
        k = end - 1
        while k > 0:
            sep = _joiner(text[kept[k - 1][1] : group[0][0]])
            if sep is None or len(group) >= _MAX_GROUP:
                break
            group.insert(0, kept[k - 1])
            seps.insert(0, sep)
            k -= 1
        end = k
        parts: list[str] = []
        joined = ""
        for n, (_, _, content) in enumerate(group):
            content = content.strip()
            if content in parts:
                continue  # the same box repeated is one answer
            joined += (seps[n - 1] if parts else "") + content
            parts.append(content)
        start = group[0][0]
        before = text[max(0, start - 3) : start].rstrip(" $")
        found.append(_Statement(start, group[-1][1], joined, before.endswith("=")))
    return found[::-1]


def _sentence_end(text: str, i: int, limit: int = 500) -> int:
    """Where the sentence starting at ``i`` ends: a full stop, ! or ? outside math, or a newline
    (display math ``\\[ ... \\]`` and ``$$ ... $$`` may span lines)."""
    math, n, stop = "", len(text), min(len(text), i + limit)
    j = i
    while j < stop:
        ch = text[j]
        if ch == "\\" and j + 1 < n:
            pair = text[j : j + 2]
            if pair in ("\\(", "\\[") and not math:
                math = pair
            elif (pair, math) in (("\\)", "\\("), ("\\]", "\\[")):
                math = ""
            j += 2
            continue
        if ch == "$":
            tok = "$$" if text.startswith("$$", j) else "$"
            math = "" if math == tok else (math or tok)
            j += len(tok)
            continue
        if ch == "\n" and math in ("", "$", "\\("):
            return j
        if not math and ch in ".!?" and (j + 1 >= n or text[j + 1].isspace()):
            return j
        j += 1
    return stop


def _tidy(content: str) -> str:
    content = content.strip().replace("**", "").replace("__", "").strip("`").rstrip("。")
    content = _FILLER.sub("", content).strip()
    content = _NEGATED.sub("", content).strip().rstrip(" .,;:").strip()
    wrapped = re.fullmatch(r"\$+([^$]+)\$+|\\\((.+)\\\)", content, re.DOTALL)
    return (wrapped.group(1) or wrapped.group(2)).strip() if wrapped else content


def _marker_statements(text: str, base: int) -> list[_Statement]:
    """Every marker ("the answer is X", "Final answer: X") that states something, in order."""
    found = []
    markers = list(_MARKER.finditer(text))
    low = text.lower()
    if not text.isascii() or "respuesta" in low or "antwort" in low or "resposta" in low:
        markers = sorted([*markers, *_MARKER_INTL.finditer(text)], key=lambda m: m.start())
    for m in markers[-_MAX_STATEMENTS:]:
        start = m.end()
        if not text[start:].split("\n", 1)[0].strip():  # "Answer:" then the value on its own line
            nxt = re.match(r"\s*\n\s*(?=\S)", text[start:])
            start += nxt.end() if nxt else 0
        end = _sentence_end(text, start)
        raw = text[start:end]
        if any(cmd in raw for cmd in _BOX_COMMANDS):
            continue  # "the answer is \boxed{5}": the box is the statement
        content = _tidy(raw)
        if not _NOT_AN_ANSWER.match(content):
            found.append(_Statement(base + m.start(), base + end, content))
    return found


def _hash_statements(text: str, base: int) -> list[_Statement]:
    """Every GSM8K ``#### X`` answer line, in order; a Markdown header (``#### Step 2: ...``) is none."""
    found = []
    for m in re.finditer(r"^[ \t]*####[ \t]*(.*)$", text, re.MULTILINE):
        content = _tidy(m.group(1))
        if content and not _HEADER.match(content):
            found.append(_Statement(base + m.start(), base + m.end(), content))
    return found


def last_sentence_answer(text: str, *, need_cue: bool = False) -> str | None:
    """The number a plain ending states ("So he has 15 marbles.", "... = 70,000."), if one.

    The last sentence with a digit (of the last three), its last clause with a digit, the
    value after that clause's last ``=``; exactly one number must be left (no operator), else
    None. ``need_cue``: the sentence must conclude ("so", "total", "therefore", ...).
    """
    text = text[-_TAIL:].replace("**", "")
    sentences = [s for s in re.split(r"(?<=[.!?])\s+|\n+", text) if s.strip()]
    for back, sentence in enumerate(reversed(sentences[-3:])):
        if not re.search(r"\d", sentence):
            continue
        if need_cue and not _CUE.search(sentence):
            return None
        if any(_BOX_WORD.search(s) for s in sentences[len(sentences) - 1 - back :]):
            # A box the model began at the end and did not finish ("= boxed{7}", a bare "\boxed"):
            # its final-answer statement failed, and the sentence before it is not one.
            return None
        sentence = _NEGATED.sub("", sentence.strip().rstrip(".!?"))
        clauses = [c for c in _CLAUSE_SPLIT.split(sentence) if re.search(r"\d", c)]
        if not clauses:
            return None
        value = clauses[-1].rsplit("=", 1)[-1]
        if "{" in value or "}" in value:
            return None  # "3-2=1{3=1}": braces in a plain ending are debris, not a stated number
        numbers = {n.group().replace("\\$", "").replace("$", "") for n in _NUMBER.finditer(value)}
        if len(numbers) != 1 or re.search(r"\d\s*[-+*/\u00d7^]\s*[\d(]|[-+*/=^(]\s*$", value):
            return None
        return numbers.pop()
    return None


def _structured_statements(text: str, base: int) -> list[_Statement]:
    """Answers given as JSON fields or as a fenced block holding only a value."""
    found: list[_Statement] = []
    if '"' not in text and "```" not in text:
        return found
    for m in _JSON_ANSWER.finditer(text) if '"' in text else ():
        value = m.group(2)
        if value is None:
            try:
                value = json.loads(f'"{m.group(1)}"')
            except ValueError:
                continue
        found.append(_Statement(base + m.start(), base + m.end(), value.strip()))
    for m in _CODE_VALUE.finditer(text) if "```" in text else ():
        found.append(_Statement(base + m.start(), base + m.end(), m.group(1)))
    return found


def statements(text: str) -> list[_Statement] | None:
    """Every final-answer statement of ``text`` (a completion's last ``WINDOW`` characters), by start.

    None when a box is left unclosed (the completion was cut off before its answer closed).
    """
    spans = _box_spans(text)
    if spans is None:
        return None
    base = max(0, len(text) - _TAIL)
    tail = text[base:]
    found = _box_statements(text, spans) + _marker_statements(tail, base) + _hash_statements(tail, base)
    found += _structured_statements(tail, base)
    return sorted(found, key=lambda s: s.start)


def final_of(text: str, found: list[_Statement], *, plain: bool) -> str | None:
    """The answer the last of ``found`` states (or, with ``plain``, the plain ending of ``text``)."""
    if not found:
        return last_sentence_answer(text) if plain else None
    final = found[-1]
    if plain and final.inline:
        later = last_sentence_answer(text[final.end :], need_cue=True)
        if later is not None:
            return later
    return final.text or None


def extract_answer(completion: str, *, plain: bool = False) -> str | None:
    """The final answer string of ``completion``, or None when it states none (the last statement
    wins; the verifier applies the commitment rules of ``_math_commit`` on top).

    ``plain``: also read plain endings by their last sentence (see the module docstring);
    meant for numeric gold answers only.
    """
    text = completion[-WINDOW:]
    found = statements(text)
    if found is None:
        return None
    return final_of(text, found, plain=plain)
