"""`python -m sdp.problems SOURCE --format gsm8k -o problems.jsonl`: convert and validate a problem source.

Reads SOURCE (a .jsonl/.json/.parquet file or a `datasets` name/directory) with the named
adapter (`sdp.sources.adapters.ADAPTERS`), validates every problem against the data contract,
prints the count and the first converted problem, and writes the problems as JSONL with `-o`.
A bad row stops with its file, line and field (exit status 2), before anything is written.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field

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
    domain: str | None = field(default=None, metadata={"help": "Domain of every problem (overrides the adapter's)."})
    id_prefix: str | None = field(default=None, metadata={"help": "Prefix of the problems' ids."})
    output: str | None = field(
        default=None, metadata={"aliases": ["-o"], "help": "Write the converted problems here (JSONL)."}
    )


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
            "domain": cfg.domain, "id_prefix": cfg.id_prefix}  # fmt: skip
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
