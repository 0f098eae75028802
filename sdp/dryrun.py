"""`--dry_run` of `python -m sdp.round` and `python -m sdp.evaluate`: what a run would do, without doing it.

The report has the resolved config (as `config.yaml` would record it), the problem counts per
domain, the shard plan of every planned round and of the held-out set (with the shards an earlier
run already wrote), and one rendered prompt per domain (the tokenizer is loaded for its chat
template; no model is). Nothing is written: the run directory is only read.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from sdp.shards import ShardPlan
from sdp.sources.problems import subset


def _domains(problems: Iterable[Mapping[str, Any]]) -> str:
    counts = Counter(str(p.get("domain")) for p in problems)
    return ", ".join(f"{d}: {n}" for d, n in sorted(counts.items())) or "none"


def _shards(problems: int, shard_size: int) -> int:
    return math.ceil(problems / shard_size) if problems else 0


def _written(root: Path) -> str:
    """What an earlier run left in a shard set directory, read-only."""
    plan = ShardPlan.load(root)
    if plan is None:
        return ""
    done = {kind: plan.count - len(plan.pending(kind)) for kind in ("samples", "verdicts")}
    return f"; written earlier: {done['samples']}/{plan.count} sample, {done['verdicts']}/{plan.count} verdict shards"


def shard_plan(cfg: Any, root: Path, train_all: Sequence[Mapping], eval_set: Sequence[Mapping],
               rounds: Sequence[int]) -> list[str]:
    """One line per planned round's training shards, then the held-out set's."""
    lines = []
    n = int((cfg.sampling or {}).get("n", 1))
    for k in rounds:
        problems = len(subset(list(train_all), cfg.max_train_problems, seed=cfg.seed * 1000 + k))
        if cfg.sampling_budget == "adaptive":
            spend = f"adaptive budget of {cfg.budget_samples or n * problems} samples in waves of {cfg.wave_n}"
        else:
            spend = f"sampling.n {n} -> {n * problems} samples"
        band = " (before the pass-rate filter)" if cfg.pass_rate_filter and k >= 2 else ""
        lines.append(f"  round {k}: {problems} training problems{band} in {_shards(problems, cfg.shard_size)} "
                     f"shards of {cfg.shard_size}, {spend}{_written(root / f'round-{k}')}")
    if eval_set:
        m = int((cfg.eval_sampling or {}).get("n", 1))
        after = f"the base model, then after rounds {list(rounds)}" if rounds else "the model"
        lines.append(f"  held-out: {len(eval_set)} problems in {_shards(len(eval_set), cfg.shard_size)} shards of "
                     f"{cfg.shard_size}, eval_sampling.n {m} -> {m * len(eval_set)} samples per evaluation "
                     f"({after}){_written(root / 'round-0' / 'eval')}")
    return lines


def rendered_prompts(cfg: Any, problems: Iterable[Mapping[str, Any]]) -> list[str]:
    """The first problem of each domain as the model will see it (the run's template and the model's tokenizer)."""
    from transformers import AutoTokenizer

    from sdp.sources.templates import render_prompt

    first: dict[str, Mapping[str, Any]] = {}
    for problem in problems:
        first.setdefault(str(problem.get("domain")), problem)
    try:
        tokenizer = AutoTokenizer.from_pretrained(cfg.model)
    except Exception as exc:  # the real run's preflight names the model; here the report goes on
        return [f"  (not rendered: the tokenizer of {cfg.model} did not load: {type(exc).__name__}: {exc})"]
    lines = []
    for domain, problem in sorted(first.items()):
        text = render_prompt(tokenizer, problem, cfg.template)
        lines += [f"--- {domain} ({problem.get('id')}):", text.rstrip("\n")]
    return lines


def dry_run_report(cfg: Any, root: Path, train_all: Sequence[Mapping], eval_set: Sequence[Mapping],
                   rounds: Sequence[int], config: Mapping[str, Any] | None = None, note: str = "") -> str:
    """The text `--dry_run` prints for a round config `cfg` and the rounds it would run (an evaluation passes no
    training problems and no rounds, and its own fields as `config`); `note`: what a resume would do."""
    config = {k: v for k, v in (config if config is not None else cfg.to_dict()).items() if k != "dry_run"}
    out = ["dry run: nothing is sampled, trained or written", f"run directory: {root}{note}", "",
           "resolved config:", yaml.safe_dump(config, sort_keys=False).rstrip("\n"), "", "problems:"]
    if train_all:
        out.append(f"  training: {len(train_all)} ({_domains(train_all)}); "
                   f"max_train_problems {cfg.max_train_problems} per round")
    out.append(f"  held-out: {len(eval_set)} ({_domains(eval_set)})")
    out += ["", "shard plan:", *shard_plan(cfg, root, train_all, eval_set, rounds if train_all else [])]
    out += ["", "prompts (one per domain):", *rendered_prompts(cfg, [*train_all, *eval_set])]
    return "\n".join(out)
