"""Self-improvement on the real model: SmolLM2-135M-Instruct on CPU, over seeds (issue 28; docs/real_model.md).

    python -m experiments.real_model --seeds 0 1 2     # the full experiment (both parts, 3 seeds)
    python -m experiments.real_model --quick           # seed 0: the same code path at a ~10-minute size

Part "math" (configs/recipes/real_math.yaml): SDP from the instruct model on the bundled math for 3 rounds with
the adaptive budget (`python -m sdp.round --config C --seed S` in a child, experiments.sdp_vs_control.run_sdp),
against the same-compute control: round for round the SDP arm's SFT steps on the 600 worked seed examples
(data/seed_math.jsonl; experiments.sdp_vs_control.run_control). Held out: all 200 bundled math problems.
Part "rft" (configs/recipes/real_rft.yaml), RFT after Yuan et al. (2023): first SFT of the instruct model on
the gold rationales of `--gold` GSM8K training problems (a seeded subset per seed, the recipe's SFT settings;
the `gsm8k_worked` adapter gives them), then SDP rounds on GSM8K training problems from that model, against the
same SFT steps on the same gold rationales only. Held out: a fixed GSM8K test subset (`--gsm8k-test` problems,
drawn once with seed 0, the same for every seed and arm: `<out>/gsm8k_test_<N>.jsonl`).

Chosen before the first run (both recipes): the tokenizer's chat template, the system prompt "Solve the math
problem step by step. End with the final answer written as \\boxed{N}." as the only system turn, the problem as
the user turn, no few-shot examples; gold rationales keep their <<a*b=c>> annotations and end "The final answer
is \\boxed{N}."; held-out decoding greedy (pass@1; pass@k is pass@1 at n = 1), max_tokens 256 (math) / 320
(GSM8K, as the baseline in docs/real_model.md); training candidates at temperature 0.8 (math, adaptive: waves of
4, at most 16 per problem, 8 x problems samples a round) / 0.7 n 4 fixed (GSM8K, RFT's k); verified, distinct,
at most 2 (math) / 4 (GSM8K) traces per problem; full fine-tuning, batch 4 x 2, lr 1e-5 constant, 2 epochs,
each round from the previous one; a completion cut at max_tokens is never a trace or a pass.

Cut toward the issue's 2.5 hours on 2 CPU cores: 32 math / 48 GSM8K training problems a round, 128 gold
rationales, 1 RFT round, the GSM8K test subset at 500 of 1319, greedy held-out decoding only, no bundled-code
part (0 of 480 code samples verified in the baseline), no cross-evaluation (math arms are not scored on GSM8K,
nor RFT arms on the bundled math). Even so the estimate for 3 seeds is above 2.5 hours (docs/real_model.md):
nine 500-problem GSM8K evaluations alone are about 1.3-2.5 hours. A GPU run uses the same recipes with
`--math-args`/`--rft-args` overrides (docs/real_model.md lists them).

Prints one table per part (held-out pass@1 mean ± sd over seeds per round, then means of kept traces, sampled
tokens, SFT steps and wall seconds), the round-R lead of SDP over its control paired by seed, and the per-seed
values; writes `<out>/results.json` and `<out>/real_model.png`. Re-running resumes: finished rounds of every
arm, and a finished gold SFT, are not redone.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from experiments.real_model_report import PARTS, part_table, plot, summarize
from experiments.sampling_budget import round_row
from experiments.sdp_vs_control import control_train, run_control, run_sdp, seed_pairs
from sdp.config import RoundConfig, parse_config
from sdp.round import check_contamination
from sdp.rundir import RunDir, atomic_write_json, atomic_write_jsonl
from sdp.sources.adapters import ProblemSource
from sdp.sources.problems import load_problems, subset

logger = logging.getLogger("experiments.real_model")

MATH_CONFIG = "configs/recipes/real_math.yaml"
RFT_CONFIG = "configs/recipes/real_rft.yaml"
SEED_FILES = ["data/seed_math.jsonl"]


@dataclass
class Sizes:
    """How big the experiment is; the recipes hold every other setting."""

    math_rounds: int = 3
    rft_rounds: int = 1
    gold: int = 128  # gold rationales of the first SFT (RFT part)
    gsm8k_test: int = 500  # the fixed GSM8K test subset
    math_args: list[str] = field(default_factory=list)  # more sdp.round flags, both arms of the math part
    rft_args: list[str] = field(default_factory=list)  # the same for the RFT part (and its gold SFT)


FULL = Sizes()
# The same code path at about 10 minutes on 2 idle cores: one round per part, a handful of problems.
QUICK = Sizes(math_rounds=1, rft_rounds=1, gold=16, gsm8k_test=24,
              math_args=["--max_train_problems", "12", "--max_eval_problems", "24", "--budget_samples", "48"],
              rft_args=["--max_train_problems", "8"])


def math_part(config: str, out: Path, sizes: Sizes, seed: int, seed_files: list[str]) -> dict[str, Any]:
    """SDP on the bundled math against the same steps on the worked seed examples, at one seed."""
    rounds = sizes.math_rounds
    sdp = run_sdp(config, out, rounds, seed, sizes.math_args)
    control = run_control(config, out, sdp, rounds, seed_files, seed=seed, overrides=sizes.math_args)
    return {"sdp": sdp_rows(sdp, rounds), "control": control}


def sdp_rows(sdp: RunDir, rounds: int) -> list[dict[str, Any]]:
    """Per round of an SDP run: held-out pass@1, yield, sampled tokens, wall time (round_row) and SFT steps."""
    rows = [round_row(sdp.root, k) for k in range(rounds + 1)]
    for k, row in enumerate(rows[1:], start=1):
        row["steps"] = int(sdp.info(k, "train").get("steps", 0))
    return rows


def gsm8k_test_file(cfg: RoundConfig, out: Path, size: int) -> Path:
    """The fixed held-out GSM8K subset of the RFT part: drawn once (seed 0) from the recipe's eval_problems."""
    path = out / f"gsm8k_test_{size}.jsonl"
    if not path.exists():
        problems = subset(load_problems(cfg.eval_problems, cfg.eval_split), size, 0)
        if len(problems) < size:
            raise SystemExit(f"--gsm8k-test {size}: the recipe's eval_problems hold only {len(problems)}")
        atomic_write_jsonl(path, problems)
    return path


def gold_problems(cfg: RoundConfig, held_out: list[dict], size: int, seed: int) -> list[dict]:
    """`size` training problems with their gold rationales (`gsm8k_worked`), decontaminated like the round's."""
    sources = [ProblemSource.parse(s) for s in cfg.train_problems]
    bad = [s.path for s in sources if s.format != "gsm8k"]
    if bad:
        raise SystemExit(f"the RFT part needs train_problems in format gsm8k (their gold rationales): {bad}")
    worked = load_problems([replace(s, format="gsm8k_worked") for s in sources], cfg.train_split)
    kept, _ = check_contamination(cfg, worked, held_out)
    if not kept:
        raise SystemExit(f"no gold rationale left after decontamination against the {len(held_out)} held-out problems")
    return subset(kept, size, seed)


def gold_sft(cfg: RoundConfig, out: Path, problems: list[dict], seed: int) -> dict[str, Any]:
    """The RFT part's first SFT: the recipe's SFT settings on the gold rationales, from the recipe's model."""
    gold = out / "gold"
    stats_path = gold / "metrics.json"
    if not stats_path.exists():
        started = time.monotonic()
        gold.mkdir(parents=True, exist_ok=True)
        atomic_write_jsonl(gold / "gold_rationales.jsonl", problems)
        atomic_write_jsonl(gold / "gold_sft.jsonl", seed_pairs(cfg.model, [str(gold / "gold_rationales.jsonl")],
                                                               cfg.template))
        stats = control_train(cfg, cfg.model, gold / "gold_sft.jsonl", gold, None, seed)
        atomic_write_json(stats_path, {"init_model": cfg.model, "examples": len(problems), "steps": stats["steps"],
                                       "train_loss": stats["train_loss"],
                                       "seconds": round(time.monotonic() - started, 1)})
    return json.loads(stats_path.read_text())


def rft_part(config: str, out: Path, sizes: Sizes, seed: int, test_file: Path) -> dict[str, Any]:
    """Gold SFT, then SDP rounds on GSM8K from it against the same steps on the gold rationales, at one seed."""
    cfg = parse_config(["--config", config, "--seed", str(seed), *sizes.rft_args,
                        "--eval_problems", str(test_file)])
    gold = gold_sft(cfg, out, gold_problems(cfg, load_problems([str(test_file)]), sizes.gold, seed), seed)
    overrides = [*sizes.rft_args, "--model", str(out / "gold" / "checkpoint"), "--eval_problems", str(test_file)]
    rounds = sizes.rft_rounds
    sdp = run_sdp(config, out, rounds, seed, overrides)
    control = run_control(config, out, sdp, rounds, [str(out / "gold" / "gold_rationales.jsonl")], seed=seed,
                          overrides=overrides)
    return {"gold": gold, "sdp": sdp_rows(sdp, rounds), "control": control}


def run(args: argparse.Namespace, sizes: Sizes) -> dict[str, Any]:
    """Both parts at every seed (each resumes what is done), then the tables, the plot and results.json."""
    args.out.mkdir(parents=True, exist_ok=True)
    test_cfg = parse_config(["--config", args.rft_config, *sizes.rft_args])
    test_file = gsm8k_test_file(test_cfg, args.out, sizes.gsm8k_test) if "rft" in args.parts else None
    raw: dict[str, dict[int, dict]] = {part: {} for part in args.parts}
    for seed in args.seeds:
        root = args.out / f"seed-{seed}"
        if "math" in args.parts:
            raw["math"][seed] = math_part(args.math_config, root / "math", sizes, seed, args.seed_files)
        if "rft" in args.parts:
            raw["rft"][seed] = rft_part(args.rft_config, root / "rft", sizes, seed, test_file)
    rounds = {"math": sizes.math_rounds, "rft": sizes.rft_rounds}
    summary = {part: summarize(raw[part], rounds[part]) for part in args.parts}
    text = "\n\n".join(part_table(part, summary[part], raw[part], rounds[part], args.seeds) for part in args.parts)
    print(text)
    plot(summary, rounds, args.out / "real_model.png")
    results = {"seeds": args.seeds, "parts": list(args.parts), "rounds": rounds, "sizes": vars(sizes),
               "configs": {"math": args.math_config, "rft": args.rft_config}, "gsm8k_test_file": str(test_file),
               "summary": summary, "runs": raw, "table": text}
    atomic_write_json(args.out / "results.json", results)
    print(f"wrote {args.out / 'results.json'} and {args.out / 'real_model.png'}")
    return results


def sizes_from(args: argparse.Namespace) -> Sizes:
    base = QUICK if args.quick else FULL
    overrides = {name: getattr(args, name) for name in ("math_rounds", "rft_rounds", "gold", "gsm8k_test")
                 if getattr(args, name) is not None}
    return replace(base, **overrides, math_args=[*base.math_args, *shlex.split(args.math_args)],
                   rft_args=[*base.rft_args, *shlex.split(args.rft_args)])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the ~10-minute slice (seed 0 unless --seeds)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="run seeds (default 0 1 2; --quick: 0)")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default runs/real_model[_quick])")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--math-config", default=MATH_CONFIG)
    parser.add_argument("--rft-config", default=RFT_CONFIG)
    parser.add_argument("--seed-files", nargs="+", default=SEED_FILES, help="worked examples of the math control")
    parser.add_argument("--math-rounds", type=int, default=None)
    parser.add_argument("--rft-rounds", type=int, default=None)
    parser.add_argument("--gold", type=int, default=None, help="gold rationales of the RFT part's first SFT")
    parser.add_argument("--gsm8k-test", type=int, default=None, help="size of the fixed GSM8K test subset")
    parser.add_argument("--math-args", default="", help="more sdp.round flags for the math part (quoted)")
    parser.add_argument("--rft-args", default="", help="more sdp.round flags for the RFT part (quoted)")
    args = parser.parse_args(argv)
    args.seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    args.out = args.out or Path("runs/real_model_quick" if args.quick else "runs/real_model")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(args, sizes_from(args))


if __name__ == "__main__":
    main()
