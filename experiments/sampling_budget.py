"""Where to spend sampling: fixed n=8 vs an adaptive budget vs adaptive + STaR rationalization, at an equal
sampled-token budget per round, on the embedded default, over seeds.

    python -m experiments.sampling_budget                          # 3 rounds, seeds 0 1 2 (configs/default.yaml)
    python -m experiments.sampling_budget --seeds 0 --rounds 1 --round-args "--max_train_problems 48"

Arms, each `python -m sdp.round --config C --seed S` in a child process (run dirs `<out>/seed-S/<arm>`):
- fixed: the config with `sampling_budget: fixed` (`sampling.n` = 8 per problem; seed 0 was `make run`
  until the adaptive budget became the default);
- adaptive: `sampling_budget: adaptive` (waves of --wave-n, at most --max-n per problem) with
  `budget_tokens` = the fixed arm's mean sampled tokens per round at that seed (and, by default,
  at most the fixed arm's samples, `sampling.n` x problems), so both spend the same tokens;
- adaptive+rationalize: the same plus `rationalize: true` (the hint pass draws on the same budget).

The fixed arm runs first at each seed since the others' token budget is measured on it. Prints, per
arm and round, held-out pass@1 per domain (mean ± sd over seeds), distinct problems with a kept
trace, kept traces, sampled tokens, sampled tokens per kept trace and the round's stage time (all
means over seeds); writes `<out>/results.json`. Re-running resumes: finished rounds are not redone.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from sdp.jsonl import iter_jsonl
from sdp.rundir import atomic_write_json

logger = logging.getLogger("experiments.sampling_budget")

DEFAULT_CONFIG = "configs/default.yaml"
DOMAINS = ("math", "code")
ARMS = ("fixed", "adaptive", "adaptive+rationalize")
# The fixed arm says so: the embedded default has been the adaptive budget since issue 30.
FIXED = ["--sampling_budget", "fixed"]


def run_arm(config: str, out: Path, arm: str, rounds: int, seed: int, extra: list[str]) -> Path:
    """One arm at one seed: `python -m sdp.round` in a child process; returns its run directory."""
    name = arm.replace("+", "_")
    cmd = [sys.executable, "-m", "sdp.round", "--config", config, "--name", name, "--output_dir", str(out),
           "--rounds", str(rounds), "--seed", str(seed), *extra]
    logger.info("%s", shlex.join(cmd))
    subprocess.run(cmd, check=True)
    return out / name


def sampled_tokens(rdir: Path) -> int:
    """Tokens of every candidate a round sampled (from its samples shards)."""
    return sum(int(r.get("completion_tokens") or 0) for p in sorted((rdir / "samples").glob("shard-*.jsonl"))
               for r in iter_jsonl(p))


def round_row(run: Path, k: int) -> dict[str, Any]:
    """What the table needs of round k of one run."""
    m = json.loads((run / f"round-{k}" / "metrics.json").read_text())
    row: dict[str, Any] = {d: (None if (m["eval"].get(d) or {}).get("pass@1") is None else 100 * m["eval"][d]["pass@1"])
                           for d in DOMAINS}
    if k == 0:
        return row
    hinted = m.get("rationalized") or {}
    kept = m["kept"] + hinted.get("kept", 0)
    tokens = (m.get("sampling") or {}).get("sampled_tokens")
    tokens = sampled_tokens(run / f"round-{k}") if tokens is None else tokens
    row.update(solved=m["problems_solved"] + hinted.get("problems_kept", 0), kept=kept, tokens=tokens,
               samples=m["samples"], tokens_per_kept=tokens / kept if kept else None,
               wall_s=sum(m["timings"].values()), rationalized_kept=hinted.get("kept", 0))
    return row


def mean_sd(values: list[float | None]) -> tuple[float | None, float | None]:
    vals = [v for v in values if v is not None]
    if not vals:
        return None, None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def table(rows: dict[str, dict[int, list[dict]]], rounds: int, seeds: list[int]) -> str:
    """One line per arm and round: pass@1 mean ± sd, then means of the cost and yield columns."""

    def pm(values: list) -> str:
        mean, sd = mean_sd(values)
        return "          -" if mean is None else f"{mean:5.1f} ± {sd:3.1f}"

    def avg(values: list, fmt: str) -> str:
        mean, _ = mean_sd(values)
        return "-" if mean is None else format(mean, fmt)

    head = (f"{'arm':21s} round | math pass@1  code pass@1 | solved   kept  rat.kept   tokens  tok/kept  wall s")
    lines = [f"held-out pass@1 (%), mean ± sd over seeds {seeds}; other columns: means over seeds", head,
             "-" * len(head)]
    for arm in ARMS:
        for k in range(rounds + 1):
            per_seed = [rows[arm][s][k] for s in seeds]
            cells = f"{arm:21s} {k:5d} | {pm([r['math'] for r in per_seed])}  {pm([r['code'] for r in per_seed])} |"
            if k:
                cells += (f" {avg([r['solved'] for r in per_seed], '6.0f')} {avg([r['kept'] for r in per_seed], '6.0f')}"
                          f" {avg([r['rationalized_kept'] for r in per_seed], '9.0f')}"
                          f" {avg([r['tokens'] for r in per_seed], '8.0f')}"
                          f" {avg([r['tokens_per_kept'] for r in per_seed], '9.1f')}"
                          f" {avg([r['wall_s'] for r in per_seed], '7.1f')}")
            lines.append(cells)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="round config of every arm")
    parser.add_argument("--out", type=Path, default=Path("runs/sampling_budget"), help="output directory")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--wave-n", type=int, default=2, help="adaptive arms: samples per active problem per wave")
    parser.add_argument("--max-n", type=int, default=32, help="adaptive arms: most samples per problem")
    parser.add_argument("--round-args", default="", help="extra sdp.round flags for every arm (quoted), "
                        "e.g. a smaller smoke: '--max_train_problems 48 --max_eval_problems 40'")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    extra = shlex.split(args.round_args)
    rows: dict[str, dict[int, list[dict]]] = {arm: {} for arm in ARMS}
    budgets: dict[int, int] = {}
    for seed in args.seeds:
        out = args.out / f"seed-{seed}"
        fixed = run_arm(args.config, out, "fixed", args.rounds, seed, [*extra, *FIXED])
        rows["fixed"][seed] = [round_row(fixed, k) for k in range(args.rounds + 1)]
        # The same sampled tokens per round as the fixed arm spent, on average over its rounds.
        budgets[seed] = int(statistics.fmean(r["tokens"] for r in rows["fixed"][seed][1:]))
        adaptive = ["--sampling_budget", "adaptive", "--wave_n", str(args.wave_n), "--max_n", str(args.max_n),
                    "--budget_tokens", str(budgets[seed])]
        for arm, flags in (("adaptive", adaptive), ("adaptive+rationalize", [*adaptive, "--rationalize", "true"])):
            run = run_arm(args.config, out, arm, args.rounds, seed, [*extra, *flags])
            rows[arm][seed] = [round_row(run, k) for k in range(args.rounds + 1)]
    text = table(rows, args.rounds, args.seeds)
    text += "\n\nadaptive token budget per round (the fixed arm's mean): " + ", ".join(
        f"seed {s}: {b}" for s, b in budgets.items())
    print(text)
    atomic_write_json(args.out / "results.json", {
        "config": args.config, "seeds": args.seeds, "rounds": args.rounds, "wave_n": args.wave_n,
        "max_n": args.max_n, "round_args": extra, "budget_tokens": budgets, "rows": rows, "table": text})
    print(f"wrote {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
