"""Find the final answer in a chain-of-thought completion.

Order of preference: the last ``\\boxed{...}``/``\\fbox{...}`` (with balanced braces, and
neighbouring boxes on the same line joined, so that ``\\boxed{2} or \\boxed{3}`` reads as
the hedge it is), then "the answer is X", then a GSM8K ``#### X`` line. All scans are
linear in the completion's length (no backtracking regex over model output).
"""

from __future__ import annotations

import re

_BOX_COMMANDS = ("\\boxed", "\\fbox")
# Text between two boxes that still makes them one answer ("2, 3", "2 or 3", "x=1 and y=2").
_JOINER = re.compile(r"^[\s,;$]*(?:\\text\{\s*|\\quad|\\qquad|\\,)*\s*(?:or|and|,)?\s*\}?[\s,;$]*$")
# Final answers sit at the end; a megabyte completion is only scanned this far back.
WINDOW = 20_000
_BRACES = re.compile(r"\\.|[{}]", re.DOTALL)
_ANSWER_IS = re.compile(r"(?:final\s+answer|answer)\s*(?:is|:)\s*:?", re.IGNORECASE)


def _box_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, content) of every balanced box, scanning once left to right."""
    spans = []
    i = 0
    while True:
        starts = [(text.find(cmd, i), cmd) for cmd in _BOX_COMMANDS]
        starts = [(s, c) for s, c in starts if s != -1]
        if not starts:
            return spans
        start, cmd = min(starts)
        j = start + len(cmd)
        while j < len(text) and text[j] == " ":
            j += 1
        if j >= len(text) or text[j] != "{":
            # "\boxed 5" (no braces): the argument is the next token
            m = re.match(r"\s*([^\s$]+)", text[j:])
            if m and j != start + len(cmd):
                spans.append((start, j + m.end(), m.group(1)))
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
            return []  # unbalanced: the completion was cut off before its answer closed
        spans.append((start, k + 1, text[j + 1 : k]))
        i = k + 1


def extract_answer(completion: str) -> str | None:
    """The final answer string of ``completion``, or None when it states none."""
    completion = completion[-WINDOW:]
    spans = _box_spans(completion)
    if spans:
        group = [spans[-1]]
        for prev in reversed(spans[:-1]):
            between = completion[prev[1] : group[0][0]]
            if len(between) > 40 or "\n" in between or not _JOINER.match(between):
                break
            group.insert(0, prev)
        return ", ".join(content.strip() for _, _, content in group)
    matches = list(_ANSWER_IS.finditer(completion[-4000:]))
    if matches:
        rest = completion[-4000:][matches[-1].end() :].strip()
        line = rest.split("\n", 1)[0].strip()
        dollar = re.fullmatch(r"\$+([^$]+)\$+.*", line)
        # "5. I hope it is correct." ends the answer at the sentence's full stop
        line = dollar.group(1) if dollar else re.split(r"\.(?:\s|$)", line, maxsplit=1)[0]
        if line:
            return line.rstrip(". ")
    for line in reversed(completion[-4000:].splitlines()):
        stripped = line.strip()
        if stripped.startswith("####"):
            answer = stripped[4:].strip()
            return answer or None
    return None
