"""`python -m sdp.inspect runs/<name> --round k`: a look at a round's traces.

Prints the round's verdict-reason histogram, its luck figures (`sdp.stages.luck`, from the
round's metrics.json, training rounds only), then for a few problems the prompt and their kept
and rejected completions with each verdict's reason. Training verdicts by default; `--eval` (and
round 0, which has only the baseline evaluation, as has a `python -m sdp.evaluate` run) shows the held-out ones.

Reads either layout of a round directory: single files (`verdicts.jsonl`, `eval.jsonl`,
`problems.jsonl`) or per-shard directories (`verdicts/shard-*.jsonl`, `eval/verdicts/...`,
`problems/shard-*.jsonl`), joining records that carry only a problem's `id` with its problem.

    python -m sdp.inspect runs/default --round 1 --problems 3 --samples 2
    python -m sdp.inspect runs/default --round 1 --id math_train-00042
    python -m sdp.inspect runs/default --round 2 --eval --reason "wrong answer"
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from itertools import zip_longest
from pathlib import Path
from typing import Any

from sdp.stages.select import dedupe_key


def iter_records(directory: str | Path, kind: str) -> Iterator[dict]:
    """Records of `kind` in `directory`: `<kind>.jsonl`, else every `<kind>/*.jsonl` shard in name order."""
    directory = Path(directory)
    single = directory / f"{kind}.jsonl"
    if single.is_file():
        paths = [single]
    elif (directory / kind).is_dir():
        paths = sorted(p for p in (directory / kind).glob("*.jsonl") if not p.name.startswith("."))
    else:
        return
    for path in paths:
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise ValueError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from exc


def _first_existing(directory: Path, kinds: Sequence[str]) -> str | None:
    for kind in kinds:
        if (directory / f"{kind}.jsonl").is_file() or (directory / kind).is_dir():
            return kind
    return None


def round_traces(run_dir: str | Path, k: int, *, heldout: bool = False) -> list[dict]:
    """A round's verified records (training, or held-out with `heldout`), each with its problem's fields."""
    rdir = Path(run_dir) / f"round-{k}"
    if not rdir.is_dir():
        raise FileNotFoundError(f"{rdir}: no such round directory")
    if heldout:
        # Shard layout keeps the evaluation in eval/; the single-file layout in eval.jsonl.
        base, kind = (rdir / "eval", "verdicts") if (rdir / "eval").is_dir() else (rdir, "eval")
        problem_kinds = ("problems", "eval_problems")
    else:
        base, kind, problem_kinds = rdir, "verdicts", ("problems",)
    if _first_existing(base, [kind]) is None:
        what = "held-out verdicts" if heldout else "training verdicts"
        raise FileNotFoundError(f"{rdir}: no {what} ({base / kind}.jsonl or {base / kind}/)")
    problems: dict[str, dict] = {}
    source = _first_existing(base, problem_kinds) or _first_existing(rdir, problem_kinds)
    records = list(iter_records(base, kind))
    if source and any("prompt" not in r for r in records):
        where = base if _first_existing(base, problem_kinds) else rdir
        problems = {p["id"]: p for p in iter_records(where, source)}
    return [{**problems.get(r.get("id"), {}), **r} for r in records]


def reason_category(verdict: Mapping[str, Any]) -> str:
    """A verdict reason's kind: the text before its first colon ("wrong answer: io case 2" -> "wrong answer")."""
    reason = str(verdict.get("reason") or "").split(":", 1)[0].strip()
    return reason or "(no reason)"


def reason_histogram(records: Sequence[Mapping[str, Any]]) -> Counter:
    """(ok, reason kind) -> count; ok is True, False or None (cannot verify)."""
    return Counter((r["verdict"]["ok"], reason_category(r["verdict"])) for r in records)


def kept_keys(run_dir: str | Path, k: int) -> set[tuple[str, str]]:
    """(problem id, completion key) of the round's SFT set, to mark which verified samples were kept."""
    path = Path(run_dir) / f"round-{k}" / "sft.jsonl"
    if not path.is_file():
        return set()
    return {(r["id"], dedupe_key(r["completion"])) for r in iter_records(path.parent, "sft")}


def luck_line(run_dir: str | Path, k: int) -> str:
    """The round's luck figures from its metrics.json, or how to compute them when it has none."""
    path = Path(run_dir) / f"round-{k}" / "metrics.json"
    luck = json.loads(path.read_text()).get("luck") if path.is_file() else None
    if not luck:
        return f"luck: not measured (python -m sdp.stages.luck <run dir> --round {k} computes it)"
    from sdp.stages.luck import format_luck

    return "luck: " + format_luck(luck)


def _clip(text: str, width: int, lines: int) -> str:
    body = text.rstrip("\n").splitlines() or [""]
    shown = [line if len(line) <= width else line[: width - 3] + "..." for line in body[:lines]]
    if len(body) > lines:
        shown.append(f"... ({len(body) - lines} more lines)")
    return textwrap.indent("\n".join(shown), "      ")


def choose_problems(groups: dict[str, list[dict]], count: int) -> list[str]:
    """Problems with both verified and failed samples first (the informative ones), then solved and
    unsolved ones alternately, each in order."""
    kinds: dict[str, list[str]] = {"mixed": [], "solved": [], "unsolved": []}
    for pid, group in groups.items():
        oks = {r["verdict"]["ok"] is True for r in group}
        kinds["mixed" if oks == {True, False} else "solved" if oks == {True} else "unsolved"].append(pid)
    rest = [pid for pair in zip_longest(kinds["solved"], kinds["unsolved"]) for pid in pair if pid is not None]
    return (kinds["mixed"] + rest)[:count]


def render(
    run_dir: str | Path,
    k: int,
    *,
    heldout: bool = False,
    problems: int = 3,
    samples: int = 2,
    ids: Sequence[str] = (),
    reason: str | None = None,
    width: int = 120,
    lines: int = 12,
) -> str:
    """The text `python -m sdp.inspect` prints."""
    if k == 0:
        heldout = True  # the baseline round has only its evaluation
    records = round_traces(run_dir, k, heldout=heldout)
    kept = set() if heldout else kept_keys(run_dir, k)
    out = [f"{Path(run_dir)} round {k} ({'held-out' if heldout else 'training'}): {len(records)} samples "
           f"of {len({r['id'] for r in records})} problems"]  # fmt: skip
    out.append("\nverdict reasons:")
    hist = reason_histogram(records)
    label = {True: "ok", False: "wrong", None: "cannot verify"}
    for (ok, kind), n in sorted(hist.items(), key=lambda item: (-item[1], str(item[0]))):
        out.append(f"  {n:7d}  {100 * n / max(len(records), 1):5.1f}%  {label[ok]:<13} {kind}")
    if not heldout:
        out.append("\n" + luck_line(run_dir, k))
    if reason is not None:
        records = [r for r in records if reason_category(r["verdict"]) == reason or r["verdict"]["ok"] is True]
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(r["id"], []).append(r)
    if reason is not None:  # only problems that have a rejected sample of that kind
        groups = {pid: g for pid, g in groups.items() if any(r["verdict"]["ok"] is not True for r in g)}
    missing = [i for i in ids if i not in groups]
    if missing:
        raise KeyError(f"no samples for problem id(s) {missing} in round {k}")
    chosen = list(ids) or choose_problems(groups, problems)
    for pid in chosen:
        group = sorted(groups[pid], key=lambda r: r.get("sample_index", 0))
        first = group[0]
        solved = sum(1 for r in group if r["verdict"]["ok"] is True)
        out.append(f"\n=== {pid} ({first.get('domain')}): {solved}/{len(group)} verified" +
                   (f", gold {first['answer']!r}" if first.get("answer") is not None else ""))  # fmt: skip
        out.append("  prompt:\n" + _clip(str(first.get("prompt", "(prompt not found)")), width, lines))
        good = [r for r in group if r["verdict"]["ok"] is True]
        bad = [r for r in group if r["verdict"]["ok"] is not True]
        for title, chosen_records in (("verified", good), ("rejected", bad)):
            for r in chosen_records[:samples]:
                v = r["verdict"]
                if title == "verified" and not heldout:
                    tag = "KEPT" if (pid, dedupe_key(r["completion"])) in kept else "verified, not kept"
                else:
                    tag = title if v["ok"] is not None else "cannot verify"
                answer = f", answer {v['answer']!r}" if v.get("answer") is not None else ""
                flags = f" [flags: {'; '.join(v['flags'])}]" if v.get("flags") else ""
                out.append(f"  [{tag}] sample {r.get('sample_index', '?')}: {v.get('reason')}{answer}{flags}")
                out.append(_clip(str(r.get("completion", "")), width, lines))
            if len(chosen_records) > samples:
                out.append(f"  ... {len(chosen_records) - samples} more {title}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sdp.inspect", description=__doc__.split("\n", 1)[0])
    parser.add_argument("run_dir", help="runs/<name>")
    parser.add_argument("--round", type=int, required=True, help="Round k (0: the baseline evaluation).")
    parser.add_argument("--eval", action="store_true", help="Held-out samples instead of training candidates.")
    parser.add_argument("--problems", type=int, default=3, help="How many problems to show.")
    parser.add_argument("--samples", type=int, default=2, help="Verified and rejected samples shown per problem.")
    parser.add_argument("--id", action="append", default=[], help="Show this problem (repeatable).")
    parser.add_argument("--reason", default=None, help="Only rejected samples of this reason kind.")
    parser.add_argument("--width", type=int, default=120, help="Clip lines to this many characters.")
    parser.add_argument("--lines", type=int, default=12, help="Lines shown per prompt or completion.")
    args = parser.parse_args(argv)
    try:
        print(render(args.run_dir, args.round, heldout=args.eval, problems=args.problems, samples=args.samples,
                     ids=args.id, reason=args.reason, width=args.width, lines=args.lines))  # fmt: skip
    except (FileNotFoundError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
