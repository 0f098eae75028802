"""Teacher -> student on the embedded default: self-distillation vs hard labels vs hard + soft labels.

    python -m experiments.teacher_student                    # math, 1 seed (~8 min on 2 busy cores)
    python -m experiments.teacher_student --seeds 0 1 2 --domains math code

Three one-round runs of `python -m sdp.round`, identical except for who samples and the loss:
  (a) self:      the student samples its own candidates; SFT on its verified traces;
  (b) hard:      the teacher (data/teacher) samples; SFT of the student on the teacher's verified traces;
  (c) hard+soft: the same teacher traces (same seeds, so the same SFT set as (b)); the loss adds
                 alpha * T^2 * KL(teacher_T || student_T) through `sdp.distill.kd.KDSFTTrainer`.
Every run starts from the student's base (`init_from: base`) with the same SFT budget (optimizer
steps x batch, whatever the number of kept traces), and is
scored on the same held-out problems with the same sampling. The teacher is trained by
`python -m data.train_teacher` first when `--teacher` does not exist. Prints one table (held-out
pass@1 of the student after each arm, plus the student's base and the teacher for reference).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

logger = logging.getLogger(__name__)

ARMS = {
    "a": ("self-distillation (own verified traces)", False, False),
    "b": ("hard labels (teacher's verified traces)", True, False),
    "c": ("hard + soft labels (+ teacher logits)", True, True),
}


def round_args(args: argparse.Namespace, name: str, seed: int, teacher: bool, soft: bool) -> list[str]:
    """Command line of one arm's `sdp.round` run."""
    domains = args.domains
    cli = [
        "--name", name, "--output_dir", str(args.out), "--model", str(args.student),
        "--train_problems", *[str(REPO / "data" / f"{d}_train.jsonl") for d in domains],
        "--eval_problems", *[str(REPO / "data" / f"{d}_eval.jsonl") for d in domains],
        "--max_train_problems", str(args.train_problems), "--max_eval_problems", str(args.eval_problems),
        "--rounds", "1", "--init_from", "base", "--seed", str(seed), "--max_per_problem", str(args.max_per_problem),
        "--sampling", json.dumps({"n": args.n, "temperature": 1.0, "max_tokens": 160}),
        "--eval_sampling", json.dumps({"n": args.eval_n, "temperature": 1.0, "max_tokens": 160}),
        "--sft", json.dumps({"max_steps": args.max_steps, "per_device_train_batch_size": args.batch_size,
                             "learning_rate": args.lr, "lr_scheduler_type": "constant", "logging_steps": 20,
                             "save_strategy": "no", "report_to": "none", "max_length": 256, "disable_tqdm": True}),
        "--progress", "false",
    ]
    if teacher:
        cli += ["--teacher_model", str(args.teacher)]
    if soft:
        cli += ["--kd", json.dumps({"alpha": args.alpha, "temperature": args.temperature})]
    return cli


def teacher_eval(args: argparse.Namespace, seed: int) -> dict:
    """Held-out scores of the teacher, sampled exactly like the arms' evaluations."""
    from sdp.config import parse_config
    from sdp.stages.evaluate import evaluate_model
    from sdp.sources.problems import load_problems, subset

    cfg = parse_config(round_args(args, "teacher-eval", seed, False, False))
    problems = subset(load_problems(cfg.eval_problems, cfg.eval_split), cfg.max_eval_problems, cfg.seed)
    with tempfile.TemporaryDirectory() as tmp:
        scores, _ = evaluate_model(cfg, str(args.teacher), problems, Path(tmp))
    return scores


def fmt(values: list[float]) -> str:
    mean = 100 * statistics.mean(values)
    if len(values) == 1:
        return f"{mean:5.1f}"
    return f"{mean:5.1f} ± {100 * statistics.stdev(values):.1f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", type=Path, default=REPO / "data" / "model")
    parser.add_argument("--teacher", type=Path, default=REPO / "data" / "teacher")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "teacher_student")
    parser.add_argument("--domains", nargs="+", default=["math"], choices=["math", "code"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--train-problems", type=int, default=1000, help="pool problems sampled per run")
    parser.add_argument("--eval-problems", type=int, default=200, help="held-out problems per domain set")
    parser.add_argument("--n", type=int, default=4, help="candidates per training problem")
    parser.add_argument("--eval-n", type=int, default=4, help="samples per held-out problem (pass@1 = mean)")
    parser.add_argument("--max-per-problem", type=int, default=1)
    # One fixed SFT budget for every arm (100 steps of 32, lr 1e-3 constant), as measured in docs/distill.md
    parser.add_argument("--max-steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--temperature", type=float, default=2.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from sdp.round import main as round_main

    if not (args.teacher / "config.json").exists():
        from data.train_teacher import main as train_teacher

        logger.info("no teacher at %s: training it (python -m data.train_teacher)", args.teacher)
        train_teacher(["--out", str(args.teacher), "--student", str(args.student)])

    rows: dict[str, dict[str, list[float]]] = {}
    for seed in args.seeds:
        for key, (_, teacher, soft) in ARMS.items():
            name = f"{key}-seed{seed}"
            round_main(round_args(args, name, seed, teacher, soft))
            run = args.out / name
            m1 = json.loads((run / "round-1" / "metrics.json").read_text())
            m0 = json.loads((run / "round-0" / "metrics.json").read_text())
            row = rows.setdefault(key, {"pass1": [], "passk": [], "kept": [], "base": []})
            row["pass1"].append(m1["eval"]["all"]["pass@1"])
            row["passk"].append(m1["eval"]["all"]["pass@k"])
            row["kept"].append(m1["kept"])
            row["base"].append(m0["eval"]["all"]["pass@1"])
        t = teacher_eval(args, seed)["all"]
        rows.setdefault("teacher", {"pass1": [], "passk": []})
        rows["teacher"]["pass1"].append(t["pass@1"])
        rows["teacher"]["passk"].append(t["pass@k"])

    k = args.eval_n
    domains = "+".join(args.domains)
    print(f"\nteacher -> student on the bundled {domains} problems: {args.train_problems} pool problems x {args.n} "
          f"samples, {args.eval_problems} held-out x {k} samples, seeds {args.seeds}, KD alpha={args.alpha} T={args.temperature}")
    print(f"| {'student trained on':<46} | {'kept traces':>11} | {'held-out pass@1 (%)':>19} | {f'pass@{k} (%)':>11} |")
    print(f"|{'-' * 48}|{'-' * 13}|{'-' * 21}|{'-' * 13}|")
    base = rows["a"]["base"]
    print(f"| {'(student base, before the round)':<46} | {'-':>11} | {fmt(base):>19} | {'-':>11} |")
    for key, (label, _, _) in ARMS.items():
        r = rows[key]
        kept = f"{statistics.mean(r['kept']):.0f}"
        print(f"| {f'({key}) {label}':<46} | {kept:>11} | {fmt(r['pass1']):>19} | {fmt(r['passk']):>11} |")
    t = rows["teacher"]
    print(f"| {'(teacher, for reference)':<46} | {'-':>11} | {fmt(t['pass1']):>19} | {fmt(t['passk']):>11} |")


if __name__ == "__main__":
    main()
