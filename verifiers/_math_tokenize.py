"""Split a normalised answer into (kind, value) tokens for ``_math_parse``: numbers, commands, letters, operators.

LaTeX command aliases are folded here (``\\cdot`` -> ``*``, ``\\leq`` -> ``<=``), and the token count is
capped so a hostile answer cannot make the parser slow.
"""

from __future__ import annotations

import re

from verifiers._math_normalize import ParseError

MAX_TOKENS = 400

_CMD_ALIASES = {
    "cdot": "*", "times": "*", "ast": "*", "div": "/", "le": "<=", "leq": "<=",
    "leqslant": "<=", "ge": ">=", "geq": ">=", "geqslant": ">=", "lt": "<", "gt": ">",
    "ne": "!=", "neq": "!=", "vert": "|", "lvert": "|", "rvert": "|", "mid": "|",
    "cfrac": "frac", "infin": "infty", "infinity": "infty", "to": "=",
}
_TOKEN = re.compile(
    r"(?P<num>\d+(?:\.\d*)?|\.\d+)|(?P<cmd>\\[a-zA-Z]+|\\[{}|\\])|(?P<ch>[a-zA-Z])"
    r"|(?P<op><=|>=|!=|[-+*/^_!=<>()\[\]{},|&:])|(?P<ws>\s+)"
)


def tokenize(s: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(s):
        m = _TOKEN.match(s, pos)
        if not m:
            raise ParseError(f"unexpected character {s[pos]!r}")
        pos = m.end()
        kind = m.lastgroup
        value = m.group()
        if kind == "ws":
            continue
        if kind == "cmd":
            name = value[1:]
            name = _CMD_ALIASES.get(name, name)
            if name in ("*", "/", "<=", ">=", "<", ">", "!=", "|", "="):
                kind, value = "op", name
            else:
                value = name
        tokens.append((kind, value))
        if len(tokens) > MAX_TOKENS:
            raise ParseError("answer has too many tokens")
    return tokens
