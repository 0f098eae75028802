"""Generate the bundled problem sets of the embedded default, deterministically.

    python -m data.generate            # (re)write data/*.jsonl
    python -m data.generate --check    # exit 1 if a checked-in file differs from the generator

Two domains, one shared skill (small-number arithmetic):
- math: two- or three-step arithmetic word problems; gold is only the final answer.
- code: "write f so that f(x1) = y1 and f(x1+1) = y2" for a linear f; hidden assert tests.

Every split is drawn from one seeded stream and de-duplicated on the problem's content, so the
held-out problems never appear in the pool or the seed set. The seed sets carry a worked
chain-of-thought `completion` (the only worked examples the base model ever sees); the pools
carry answers/tests only, which is the setting self-distillation from proof is for.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Callable, Iterator

DATA_DIR = Path(__file__).resolve().parent
SEED = 1234

# file name -> (domain, number of problems, include worked completion)
SPLITS: dict[str, tuple[str, int, bool]] = {
    "math_eval.jsonl": ("math", 200, False),
    "code_eval.jsonl": ("code", 200, False),
    "seed_math.jsonl": ("math", 600, True),
    "seed_code.jsonl": ("code", 300, True),
    "math_train.jsonl": ("math", 4000, False),
    "code_train.jsonl": ("code", 850, False),
}

NAMES = ["Ann", "Ben", "Cal", "Dee", "Eli", "Fay", "Gus", "Ida", "Jo", "Kim", "Lu", "Max"]
OBJECTS = ["apples", "pens", "cards", "coins", "books", "eggs", "shells", "stamps"]
# Phrase -> operation. Several phrasings per operation so the model must read, not match.
ADD = ["buys {n} more", "finds {n} more", "gets {n} more", "wins {n} more"]
SUB = ["gives away {n}", "loses {n}", "sells {n}", "uses {n}"]
MUL = {2: ["doubles them", "gets twice as many"], 3: ["triples them"]}


def _math_problem(rng: random.Random) -> tuple[str, dict, str]:
    """Return (dedup key, record without id, worked completion)."""
    name, obj = rng.choice(NAMES), rng.choice(OBJECTS)
    value = rng.randint(2, 20)
    steps = rng.choice([2, 3])
    sentences = [f"{name} has {value} {obj}."]
    work = []
    used_mul = False
    for _ in range(steps):
        kind = rng.random()
        if kind < 0.15 and not used_mul and value <= 9:
            factor = rng.choice([2, 3]) if value <= 6 else 2
            phrase = rng.choice(MUL[factor])
            new, line = value * factor, f"{value}*{factor}={value * factor}."
            used_mul = True
        elif kind < 0.55 or value < 3:
            n = rng.randint(1, 9)
            phrase = rng.choice(ADD).format(n=n)
            new, line = value + n, f"{value}+{n}={value + n}."
        else:
            n = rng.randint(1, min(value - 1, 9))
            phrase = rng.choice(SUB).format(n=n)
            new, line = value - n, f"{value}-{n}={value - n}."
        sentences.append(f"Then {name} {phrase}.")
        work.append(line)
        value = new
    sentences.append(f"How many {obj} does {name} have?")
    prompt = " ".join(sentences)
    completion = " ".join(work) + f" \\boxed{{{value}}}"
    return prompt, {"domain": "math", "prompt": prompt, "answer": str(value)}, completion


def _code_problem(rng: random.Random) -> tuple[str, dict, str]:
    """A linear f(x) = a*x + b given at two consecutive points; hidden tests elsewhere."""
    a, b, x1 = rng.randint(1, 9), rng.randint(0, 29), rng.randint(1, 5)
    name = rng.choice(["f", "g", "h"])
    x2 = x1 + 1
    y1, y2 = a * x1 + b, a * x2 + b
    prompt = f"Write {name} so that {name}({x1}) = {y1} and {name}({x2}) = {y2}."
    body = f"{a}*x+{b}" if b else f"{a}*x"
    work = f"{y2}-{y1}={a}. {a}*{x1}={a * x1}. {y1}-{a * x1}={b}."
    completion = f"{work}\n```python\ndef {name}(x):\n    return {body}\n```"
    test_points = sorted({0, x1, x2, x2 + 3, 12})
    tests = "\n".join(f"assert {name}({x}) == {a * x + b}" for x in test_points) + "\n"
    record = {"domain": "code", "prompt": prompt, "tests": tests, "entry_point": name}
    # f, g, h name the same task: dedupe on the function itself so no eval task leaks.
    return f"{a},{b},{x1}", record, completion


GENERATORS: dict[str, Callable[[random.Random], tuple[str, dict, str]]] = {
    "math": _math_problem,
    "code": _code_problem,
}


def build() -> dict[str, list[dict]]:
    """All splits, in `SPLITS` order, drawn without repeats from one seeded stream per domain."""
    out: dict[str, list[dict]] = {}
    for domain, gen in GENERATORS.items():
        rng = random.Random(f"{SEED}-{domain}")
        seen: set[str] = set()
        for fname, (dom, count, worked) in SPLITS.items():
            if dom != domain:
                continue
            stem = fname.removesuffix(".jsonl")
            rows = []
            while len(rows) < count:
                key, record, completion = gen(rng)
                if key in seen:
                    continue
                seen.add(key)
                record = {"id": f"{stem}-{len(rows):05d}", **record}
                if worked:
                    record["completion"] = completion
                rows.append(record)
            out[fname] = rows
    return {name: out[name] for name in SPLITS}


def _lines(rows: list[dict]) -> Iterator[str]:
    for row in rows:
        yield json.dumps(row, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify the files instead of writing")
    parser.add_argument("--out", type=Path, default=DATA_DIR, help="output directory")
    args = parser.parse_args(argv)
    stale = []
    for fname, rows in build().items():
        text = "".join(_lines(rows))
        path = args.out / fname
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path))
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path} ({len(rows)} problems)")
    if stale:
        print("out of date (run `python -m data.generate`): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
