"""Self-distillation from proof against the same-compute seed-only control, on the embedded default, over seeds.

    python -m experiments.sdp_vs_control --seeds 0 1 2        # both arms, 3 rounds, 3 seeds (configs/default.yaml)
    python -m experiments.sdp_vs_control --control-only 300    # the control arm alone (seed 0), 300 steps per round

SDP arm: `python -m sdp.round --config C --seed S` in a child process, as a user runs it (seed 0 is `make run`).
Control arm: the same base (the shipped `data/model`), the same SFT settings and, round for round, the same number
of optimizer steps as that seed's SDP arm took, but trained on the 900 worked seed examples alone (no
self-generated traces); evaluated on the same held-out problems with the same sampler. The seed S changes
sampling, the pool subsets and the training order (round k trains with seed S + k) in both arms. Both arms continue
from their own previous checkpoint (or restart from the base when the config says `init_from: base`).

Prints, per round, mean ± sd over seeds of held-out pass@1 per domain for each arm and the per-seed values;
writes `<out>/results.json` and `<out>/sdp_vs_control.png` (error bars: sd over seeds). Re-running resumes:
finished rounds of either arm are not redone (`<out>/seed-S/{sdp,control}`).
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sdp.config import parse_config
from sdp.rundir import RunDir, atomic_write_json, atomic_write_jsonl, read_jsonl
from sdp.sources.problems import load_problems, subset
from sdp.sources.templates import DEFAULT_TEMPLATE, PromptTemplate, render_prompt
from sdp.stages.evaluate import evaluate_model, format_scores

logger = logging.getLogger("experiments.sdp_vs_control")

DEFAULT_CONFIG = "configs/default.yaml"
SEED_FILES = ["data/seed_math.jsonl", "data/seed_code.jsonl"]
DOMAINS = ("math", "code")
ARMS = ("sdp", "control")


def run_sdp(config: str, out: Path, rounds: int, seed: int, overrides: Sequence[str] = ()) -> RunDir:
    """The SDP arm: `python -m sdp.round` in a child process (`overrides`: more of its flags); run dir `<out>/sdp`."""
    cmd = [sys.executable, "-m", "sdp.round", "--config", config, "--name", "sdp", "--output_dir", str(out),
           "--rounds", str(rounds), "--seed", str(seed), *overrides]
    logger.info("%s", shlex.join(cmd))
    subprocess.run(cmd, check=True)
    return RunDir(out / "sdp")


def seed_pairs(model: str, files: list[str], template: PromptTemplate = DEFAULT_TEMPLATE) -> list[dict]:
    """The worked seed examples as rendered prompt / completion pairs, exactly as the round trains."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    rows = [r for f in files for r in read_jsonl(f)]
    missing = [r["id"] for r in rows if "completion" not in r]
    if missing:
        raise SystemExit(f"seed examples without a worked 'completion': {missing[:5]}")
    return [{"id": r["id"], "prompt": render_prompt(tokenizer, r, template), "completion": r["completion"]}
            for r in rows]


def control_train(cfg: Any, init: str, sft_path: Path, rdir: Path, steps: int, seed: int,
                  sft: dict | None = None) -> dict:
    """`steps` SFT steps on the pairs of `sft_path` from `init`, through the round's own train stage.

    `sft`: trl.SFTConfig settings replacing the config's (max_steps is set from `steps` unless it is None).
    """
    from sdp.stages.train import TrainJob, run_train

    args = dict(sft if sft is not None else (cfg.sft or {}))
    if steps is not None:
        args["max_steps"] = steps
    job = TrainJob(init_model=init, sft_path=str(sft_path), output=str(rdir / "checkpoint"),
                   work_dir=str(rdir / "trainer"), stats=str(rdir / "train_stats.json"),
                   sft_args=args, seed=seed, lora=cfg.lora, kd=None, progress=cfg.progress, dtype=cfg.dtype,
                   template=cfg.template_fields())
    return run_train(job, rdir / "train.job.json")


def run_control(config: str, out: Path, sdp: RunDir | None, rounds: int, seed_files: list[str],
                steps: int | None = None, seed: int = 0, evaluate: bool = True,
                overrides: Sequence[str] = ()) -> list[dict]:
    """The control arm: per round, as many SFT steps as the SDP arm took, on the seed set only.

    `overrides`: more sdp.round flags, as the SDP arm got them. A round in which the SDP arm kept nothing
    (0 steps) keeps the previous model in both arms, and is evaluated again like the SDP arm's.
    """
    cfg = parse_config(["--config", config, "--name", "control", "--output_dir", str(out), "--seed", str(seed),
                        *overrides])
    eval_set = subset(load_problems(cfg.eval_problems, cfg.eval_split), cfg.max_eval_problems, cfg.seed)
    root = out / "control"
    sft_path = root / "seed_sft.jsonl"
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_jsonl(sft_path, seed_pairs(cfg.model, seed_files, cfg.template))
    rows, previous = [], cfg.model
    for k in range(1, rounds + 1):
        rdir = root / f"round-{k}"
        metrics_path = rdir / "metrics.json"
        if not metrics_path.exists():
            started = time.monotonic()
            steps_k = steps if steps is not None else int(sdp.info(k, "train").get("steps", 0))
            rdir.mkdir(parents=True, exist_ok=True)
            init = cfg.model if cfg.init_from == "base" else previous
            # The same per-round training seed as the SDP arm's train stage (seed + k).
            stats = (control_train(cfg, init, sft_path, rdir, steps_k, cfg.seed + k) if steps_k
                     else {"steps": 0, "train_loss": None})
            model = str(rdir / "checkpoint") if steps_k else init
            scores = evaluate_model(cfg, model, eval_set, rdir)[0] if evaluate else {}
            atomic_write_json(metrics_path, {"round": k, "init_model": init, "checkpoint": model,
                                             "steps": stats["steps"], "train_loss": stats["train_loss"],
                                             "eval": scores, "seconds": round(time.monotonic() - started, 1)})
        metrics = json.loads(metrics_path.read_text())
        logger.info("control seed %d round %d: %d steps, %s", seed, k, metrics["steps"], format_scores(metrics["eval"]))
        rows.append(metrics)
        previous = metrics.get("checkpoint", str(rdir / "checkpoint"))
    return rows


def pass1(scores: dict[str, Any], domain: str) -> float | None:
    value = (scores.get(domain) or {}).get("pass@1")
    return None if value is None else 100 * value


def curves(sdp_rows: list[dict], control_rows: list[dict]) -> dict[str, dict[str, list[float | None]]]:
    """pass@1 (%) per arm and domain for rounds 0..R; the control's round 0 is the same base evaluation."""
    return {
        "sdp": {d: [pass1(r["eval"], d) for r in sdp_rows] for d in DOMAINS},
        "control": {d: [pass1(sdp_rows[0]["eval"], d)] + [pass1(r["eval"], d) for r in control_rows]
                    for d in DOMAINS},
    }


def mean_sd(values: list[float | None]) -> tuple[float | None, float | None]:
    vals = [v for v in values if v is not None]
    if not vals:
        return None, None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def table(per_seed: dict[int, dict], rounds: int) -> str:
    """Mean ± sd over seeds per round, arm and domain, then the per-seed values."""
    seeds = sorted(per_seed)

    def cell(arm: str, domain: str, k: int) -> str:
        mean, sd = mean_sd([per_seed[s][arm][domain][k] for s in seeds])
        return "        -" if mean is None else f"{mean:5.1f} ± {sd:3.1f}"

    lines = [f"held-out pass@1 (%), mean ± sd over seeds {seeds}",
             "round | math: SDP        control     | code: SDP        control",
             "----- | ---------------------------- | ----------------------------"]
    for k in range(rounds + 1):
        lines.append(f"{k:5d} |    {cell('sdp', 'math', k)}  {cell('control', 'math', k)} |"
                     f"    {cell('sdp', 'code', k)}  {cell('control', 'code', k)}")
    lines.append("")
    lines.append("per seed (rounds 0.." + str(rounds) + "):")
    for s in seeds:
        for arm in ARMS:
            parts = [f"{d} " + " / ".join("-" if v is None else f"{v:.1f}" for v in per_seed[s][arm][d])
                     for d in DOMAINS]
            lines.append(f"  seed {s} {arm:7s}: " + "; ".join(parts))
    return "\n".join(lines)


def lead(per_seed: dict[int, dict], rounds: int) -> dict[str, dict[str, float | None]]:
    """SDP minus control at the last round, per domain: mean and sd over seeds of the paired difference."""
    result = {}
    for d in DOMAINS:
        diffs = [per_seed[s]["sdp"][d][rounds] - per_seed[s]["control"][d][rounds] for s in per_seed
                 if per_seed[s]["sdp"][d][rounds] is not None and per_seed[s]["control"][d][rounds] is not None]
        mean, sd = mean_sd(diffs)
        result[d] = {"mean": mean, "sd": sd, "per_seed": diffs}
    return result


def plot(per_seed: dict[int, dict], rounds: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(DOMAINS), figsize=(9, 3.6), sharey=True)
    xs = list(range(rounds + 1))
    labels = {"sdp": "self-distillation (verified own traces)", "control": "control: same steps on seed examples"}
    for ax, domain in zip(axes, DOMAINS):
        for arm, style in (("sdp", "o-"), ("control", "s--")):
            stats = [mean_sd([per_seed[s][arm][domain][k] for s in per_seed]) for k in xs]
            ax.errorbar(xs, [m or 0 for m, _ in stats], yerr=[sd or 0 for _, sd in stats], fmt=style, capsize=3,
                        label=labels[arm])
        ax.set_title(f"{domain}: held-out pass@1 ({len(per_seed)} seeds)")
        ax.set_xlabel("round")
        ax.set_xticks(xs)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("pass@1 (%), mean ± sd")
    axes[0].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="round config of both arms")
    parser.add_argument("--out", type=Path, default=Path("runs/sdp_vs_control"), help="output directory")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="run seeds (0 is `make run`)")
    parser.add_argument("--seed-files", nargs="+", default=SEED_FILES, help="worked examples of the control")
    parser.add_argument("--control-only", type=int, default=None, metavar="STEPS",
                        help="run only the control arm (each --seeds seed), with this many SFT steps per round")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    if args.control_only is not None:
        for seed in args.seeds:
            rows = run_control(args.config, args.out / f"seed-{seed}", None, args.rounds, args.seed_files,
                               args.control_only, seed)
            print(f"control seed {seed}: " + " | ".join(f"round {r['round']}: {format_scores(r['eval'])}"
                                                      for r in rows))
        return
    per_seed, raw = {}, {}
    for seed in args.seeds:
        out = args.out / f"seed-{seed}"
        sdp = run_sdp(args.config, out, args.rounds, seed)
        sdp_rows = [json.loads((sdp.round_dir(k) / "metrics.json").read_text()) for k in range(args.rounds + 1)]
        control_rows = run_control(args.config, out, sdp, args.rounds, args.seed_files, seed=seed)
        per_seed[seed] = curves(sdp_rows, control_rows)
        raw[seed] = {"sdp": sdp_rows, "control": control_rows}
    text = table(per_seed, args.rounds)
    gaps = lead(per_seed, args.rounds)
    text += "\n\nround-%d lead of SDP over the control (paired by seed): " % args.rounds + "; ".join(
        f"{d} {g['mean']:+.1f} ± {g['sd']:.1f}" for d, g in gaps.items() if g["mean"] is not None)
    print(text)
    plot(per_seed, args.rounds, args.out / "sdp_vs_control.png")
    atomic_write_json(args.out / "results.json", {"config": args.config, "seeds": args.seeds, "rounds": args.rounds,
                                                  "pass1": per_seed, "lead": gaps, "runs": raw, "table": text})
    print(f"wrote {args.out / 'results.json'} and {args.out / 'sdp_vs_control.png'}")


if __name__ == "__main__":
    main()
