"""`python -m sdp.problems SOURCE --format gsm8k -o problems.jsonl`: convert and validate a problem source.

Reads SOURCE (a .jsonl/.json/.parquet file or a `datasets` name/directory) with the named
adapter (`sdp.sources.adapters.ADAPTERS`), validates every problem against the data contract,
prints the count and the first converted problem, and writes the problems as JSONL with `-o`.
A bad row stops with its file, line and field (exit status 2), before anything is written.

`--score COMPLETIONS.jsonl` also scores given completions (`{id, completion}` per line, several
per id allowed) on the converted problems through the verify stage
(`sdp.stages.verify.verify_records`) and the evaluation's metrics (`sdp.stages.evaluate.eval_metrics`),
and prints a pass@1 / pass@k table per domain, e.g. HumanEval's canonical solutions:

    python -m sdp.problems HumanEval.jsonl.gz --format humaneval --score canonical.jsonl
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml


@dataclass(frozen=True)
class ConvertConfig:
    """Options of `python -m sdp.problems` (the source is the positional argument)."""

    format: str = field(
        default="sdp", metadata={"help": "Row schema: sdp, gsm8k, math, humaneval, mbpp, apps or fields."}
    )
    fields: str | None = field(
        default=None,
        metadata={"help": "For --format fields: a YAML mapping problem field -> column, e.g. '{prompt: q, answer: a}'."},
    )
    split: str = field(default="train", metadata={"help": "Split of a `datasets` source."})
    subset: str | None = field(default=None, metadata={"help": "Configuration name of a `datasets` source (e.g. main)."})
    domain: str | None = field(default=None, metadata={"help": "Domain of every problem (overrides the adapter's)."})
    id_prefix: str | None = field(default=None, metadata={"help": "Prefix of the problems' ids."})
    output: str | None = field(
        default=None, metadata={"aliases": ["-o"], "help": "Write the converted problems here (JSONL)."}
    )
    score: str | None = field(
        default=None, metadata={"help": "JSONL of {id, completion} to score on the converted problems."}
    )
    k: int | None = field(default=None, metadata={"help": "k of pass@k with --score (default: samples per problem)."})
    timeout: float = field(default=5.0, metadata={"help": "Seconds per verification with --score."})
    workers: int | None = field(default=None, metadata={"help": "Verification worker processes with --score."})


def score_completions(
    problems: Sequence[Mapping[str, Any]],
    completions: Iterable[Mapping[str, Any]],
    *,
    k: int | None = None,
    timeout: float = 5.0,
    workers: int | None = None,
) -> tuple[dict[str, dict[str, Any]], list[dict]]:
    """Verify `completions` ({id, completion}) against `problems` as the evaluation does; (scores, records)."""
    from sdp.stages.evaluate import eval_metrics
    from sdp.stages.verify import verify_records

    by_id = {p["id"]: p for p in problems}
    counts: dict[str, int] = {}
    samples = []
    for c in completions:
        if c.get("id") not in by_id:
            raise KeyError(f"completion for unknown problem id {c.get('id')!r}")
        index = counts.get(c["id"], 0)
        counts[c["id"]] = index + 1
        samples.append({**by_id[c["id"]], "completion": c["completion"], "sample_index": index})
    records = verify_records(samples, workers=workers, timeout=timeout, progress=False)
    return eval_metrics(records, k), records


def scores_table(scores: Mapping[str, Mapping[str, Any]]) -> str:
    """A markdown table of per-domain scores (percentages)."""

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}"

    k = next(iter(scores.values()))["k"] if scores else 1
    # With one completion per problem pass@k is pass@1: one column, not two of the same name.
    header = ["domain", "problems", "pass@1 (%)"] + ([f"pass@{k} (%)"] if k != 1 else [])
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for domain, s in scores.items():
        cells = [domain, str(s["problems"]), pct(s["pass@1"])] + ([pct(s["pass@k"])] if k != 1 else [])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 for a bad source)."""
    from transformers import HfArgumentParser  # heavy; only the command needs it

    from sdp.rundir import atomic_write_jsonl
    from sdp.sources.problems import ProblemError, load_problems

    parser = HfArgumentParser(ConvertConfig, prog="python -m sdp.problems", description=__doc__.split("\n", 1)[0])
    parser.add_argument("source", help="File, directory or `datasets` name of the raw rows.")
    cfg, extra = parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False)
    try:
        fields = yaml.safe_load(cfg.fields) if cfg.fields else {}
    except yaml.YAMLError as exc:
        parser.error(f"--fields: not a YAML mapping: {exc}")
    spec = {"path": extra.source, "format": cfg.format, "fields": fields, "split": cfg.split,
            "subset": cfg.subset, "domain": cfg.domain, "id_prefix": cfg.id_prefix}  # fmt: skip
    try:
        problems = load_problems(spec, cfg.split)
    except ProblemError as exc:
        print(f"error: bad problem source: {exc}", file=sys.stderr)
        return 2
    domains: dict[str, int] = {}
    for p in problems:
        domains[p["domain"]] = domains.get(p["domain"], 0) + 1
    print(f"{len(problems)} problems ({', '.join(f'{d}: {n}' for d, n in sorted(domains.items()))}) "
          f"from {extra.source} (format {cfg.format})")  # fmt: skip
    print("first problem:")
    print(json.dumps(problems[0], indent=2, ensure_ascii=False))
    if cfg.output:
        atomic_write_jsonl(cfg.output, problems)
        print(f"wrote {cfg.output}")
    if cfg.score:
        from sdp.rundir import read_jsonl

        try:
            scores, records = score_completions(
                problems, read_jsonl(cfg.score), k=cfg.k, timeout=cfg.timeout, workers=cfg.workers
            )
        except (KeyError, OSError, ValueError) as exc:
            print(f"error: --score {cfg.score}: {exc}", file=sys.stderr)
            return 2
        reasons: dict[str, int] = {}
        for r in records:
            reason = str(r["verdict"]["reason"]).split(":")[0]
            reasons[reason] = reasons.get(reason, 0) + 1
        print(f"scored {len(records)} completions: " + ", ".join(f"{n} {r}" for r, n in sorted(reasons.items())))
        print(scores_table(scores))
    return 0


if __name__ == "__main__":
    sys.exit(main())
