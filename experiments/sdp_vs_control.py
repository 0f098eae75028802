"""Self-distillation from proof against the same-compute seed-only control, on the embedded default.

    python -m experiments.sdp_vs_control                       # configs/default.yaml, 3 rounds
    python -m experiments.sdp_vs_control --rounds 2 --out runs/exp2

SDP arm: `python -m sdp.round` with the config (a child process, as a user runs it).
Control arm: the same base, the same SFT settings and, round for round, the same number of
optimizer steps as the SDP arm took, but trained on the worked seed examples alone (no
self-generated traces); evaluated on the same held-out problems with the same sampler.
Both arms continue from their own previous checkpoint (or restart from the base when the config
says `init_from: base`). Prints the table, writes `<out>/results.json` and `<out>/sdp_vs_control.png`.
Re-running resumes: finished rounds of either arm are not redone.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

from sdp.config import parse_config
from sdp.stages.evaluate import evaluate_model, format_scores
from sdp.sources.problems import load_problems, subset
from sdp.rundir import RunDir, atomic_write_json, atomic_write_jsonl, read_jsonl
from sdp.launch.process import run_stage

logger = logging.getLogger("experiments.sdp_vs_control")

DEFAULT_CONFIG = "configs/default.yaml"
SEED_FILES = ["data/seed_math.jsonl", "data/seed_code.jsonl"]
DOMAINS = ("math", "code")


def run_sdp(config: str, out: Path, rounds: int) -> RunDir:
    """The SDP arm: `python -m sdp.round` in a child process; its run dir is `<out>/sdp`."""
    cmd = [sys.executable, "-m", "sdp.round", "--config", config, "--name", "sdp", "--output_dir", str(out),
           "--rounds", str(rounds)]
    subprocess.run(cmd, check=True)
    return RunDir(out / "sdp")


def seed_pairs(model: str, files: list[str]) -> list[dict]:
    """The worked seed examples as rendered prompt / completion pairs, exactly as the round trains."""
    from transformers import AutoTokenizer

    from sdp.stages.sample import render_prompt

    tokenizer = AutoTokenizer.from_pretrained(model)
    rows = [r for f in files for r in read_jsonl(f)]
    missing = [r["id"] for r in rows if "completion" not in r]
    if missing:
        raise SystemExit(f"seed examples without a worked 'completion': {missing[:5]}")
    return [{"id": r["id"], "prompt": render_prompt(tokenizer, r["prompt"]), "completion": r["completion"]}
            for r in rows]


def run_control(config: str, out: Path, sdp: RunDir | None, rounds: int, seed_files: list[str],
                steps: int | None = None) -> list[dict]:
    """The control arm: per round, as many SFT steps as the SDP arm took, on the seed set only."""
    cfg = parse_config(["--config", config, "--name", "control", "--output_dir", str(out)])
    eval_set = subset(load_problems(cfg.eval_problems, cfg.eval_split), cfg.max_eval_problems, cfg.seed)
    root = out / "control"
    sft_path = root / "seed_sft.jsonl"
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_jsonl(sft_path, seed_pairs(cfg.model, seed_files))
    rows, previous = [], cfg.model
    for k in range(1, rounds + 1):
        rdir = root / f"round-{k}"
        metrics_path = rdir / "metrics.json"
        if not metrics_path.exists():
            steps_k = steps if steps is not None else int(sdp.info(k, "train")["steps"])
            rdir.mkdir(parents=True, exist_ok=True)
            init = cfg.model if cfg.init_from == "base" else previous
            sft_args = {**(cfg.sft or {}), "max_steps": steps_k}
            job = {"init_model": init, "sft_path": str(sft_path), "output": str(rdir / "checkpoint"),
                   "work_dir": str(rdir / "trainer"), "stats": str(rdir / "train_stats.json"), "sft_args": sft_args,
                   "seed": cfg.seed + k, "lora": cfg.lora, "kd": None, "progress": cfg.progress}
            run_stage("sdp.stages.train", job, rdir / "train.job.json")
            scores, _ = evaluate_model(cfg, str(rdir / "checkpoint"), eval_set, rdir)
            stats = json.loads((rdir / "train_stats.json").read_text())
            atomic_write_json(metrics_path, {"round": k, "init_model": init, "steps": stats["steps"],
                                             "train_loss": stats["train_loss"], "eval": scores})
        metrics = json.loads(metrics_path.read_text())
        logger.info("control round %d: %d steps, %s", k, metrics["steps"], format_scores(metrics["eval"]))
        rows.append(metrics)
        previous = str(rdir / "checkpoint")
    return rows


def pass1(scores: dict[str, Any], domain: str) -> float | None:
    return (scores.get(domain) or {}).get("pass@1")


def table(sdp_rows: list[dict], control_rows: list[dict]) -> str:
    def pct(v: float | None) -> str:
        return "   -" if v is None else f"{100 * v:5.1f}"

    lines = ["round  steps | math pass@1: SDP  control | code pass@1: SDP  control",
             "------------ | ------------------------- | -------------------------"]
    for k, row in enumerate(sdp_rows):
        ctl = control_rows[k - 1]["eval"] if k else row["eval"]
        steps = control_rows[k - 1]["steps"] if k else 0
        lines.append(f"{k:5d}  {steps:5d} |            {pct(pass1(row['eval'], 'math'))}    {pct(pass1(ctl, 'math'))} |"
                     f"            {pct(pass1(row['eval'], 'code'))}    {pct(pass1(ctl, 'code'))}")
    return "\n".join(lines)


def plot(sdp_rows: list[dict], control_rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(DOMAINS), figsize=(9, 3.6), sharey=True)
    rounds = list(range(len(sdp_rows)))
    for ax, domain in zip(axes, DOMAINS):
        sdp = [100 * (pass1(r["eval"], domain) or 0) for r in sdp_rows]
        ctl = [sdp[0]] + [100 * (pass1(r["eval"], domain) or 0) for r in control_rows]
        ax.plot(rounds, sdp, "o-", label="self-distillation (verified own traces)")
        ax.plot(rounds, ctl, "s--", label="control: same steps on seed examples")
        ax.set_title(f"{domain}: held-out pass@1")
        ax.set_xlabel("round")
        ax.set_xticks(rounds)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("pass@1 (%)")
    axes[0].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="round config of both arms")
    parser.add_argument("--out", type=Path, default=Path("runs/sdp_vs_control"), help="output directory")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed-files", nargs="+", default=SEED_FILES, help="worked examples of the control")
    parser.add_argument("--control-only", type=int, default=None, metavar="STEPS",
                        help="run only the control arm, with this many SFT steps per round")
    parser.add_argument("--sdp-run", type=Path, default=None,
                        help="a finished `sdp.round` run directory made with --config: reuse it as the SDP arm")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    if args.control_only is not None:
        run_control(args.config, args.out, None, args.rounds, args.seed_files, args.control_only)
        return
    sdp = RunDir(args.sdp_run) if args.sdp_run else run_sdp(args.config, args.out, args.rounds)
    missing = [k for k in range(args.rounds + 1) if not (sdp.round_dir(k) / "metrics.json").exists()]
    if missing:
        raise SystemExit(f"{sdp.root}: rounds {missing} have no metrics.json; finish the SDP run first")
    sdp_rows = [json.loads((sdp.round_dir(k) / "metrics.json").read_text()) for k in range(args.rounds + 1)]
    control_rows = run_control(args.config, args.out, sdp, args.rounds, args.seed_files)
    text = table(sdp_rows, control_rows)
    print(text)
    plot(sdp_rows, control_rows, args.out / "sdp_vs_control.png")
    timings = {f"round-{r['round']}": r.get("timings") for r in sdp_rows}
    atomic_write_json(args.out / "results.json", {"config": args.config, "sdp_run": str(sdp.root), "sdp": sdp_rows, "control": control_rows,
                                                  "sdp_timings": timings, "table": text})
    print(f"wrote {args.out / 'results.json'} and {args.out / 'sdp_vs_control.png'}")


if __name__ == "__main__":
    main()
