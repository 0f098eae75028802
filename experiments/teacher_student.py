"""Teacher -> student on the embedded default: self-distillation vs hard labels vs + soft labels vs + hidden states.

    python -m data.train_teacher --size big --epochs 3 --lr 3e-3 --warmup-steps 30   # once: data/teacher-big/
    python -m experiments.teacher_student --seeds 0 1 2

Four one-round runs of `python -m sdp.round` per seed, identical except for who samples and the loss:
  (a) self:       the student samples its own candidates; SFT on its verified traces;
  (b) hard:       the teacher samples; SFT of the student on the teacher's verified traces;
  (c) +soft:      the same teacher traces (same seeds, so the same SFT set as (b)); the loss adds
                  alpha * T^2 * KL(teacher_T || student_T) through `sdp.distill.kd.KDSFTTrainer`;
  (d) +hidden:    as (c), plus `kd.hidden`: the student's hidden states, through learned linear
                  projections, match the teacher's (`sdp.distill.hidden`).
Every run starts from the student's base (`init_from: base`) with the same SFT budget (optimizer
steps x batch, whatever the number of kept traces) and is scored on the same held-out problems
with the same sampling. The teacher (default data/teacher-big, wider and deeper than the student)
is trained by that command first when `--teacher` does not exist.
Prints one table: held-out pass@1 / pass@k of the student after each arm (mean +- sd over seeds),
the student's base and the teacher for reference, and both models' parameter counts and vLLM
sampling speed (generated tokens per second, same prompts and settings).
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

ARMS = {  # key: (label, teacher samples, soft labels, hidden states)
    "a": ("self-distillation (own verified traces)", False, False, False),
    "b": ("hard labels (teacher's verified traces)", True, False, False),
    "c": ("hard + soft labels (+ teacher logits)", True, True, False),
    "d": ("+ hidden states (+ projected features)", True, True, True),
}


def round_args(
    args: argparse.Namespace, name: str, seed: int, teacher: bool, soft: bool, hidden: bool = False
) -> list[str]:
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
        kd: dict = {"alpha": args.alpha, "temperature": args.temperature}
        if hidden:
            kd["hidden"] = {"weight": args.hidden_weight, "layers": args.hidden_layers, "loss": args.hidden_loss}
        cli += ["--kd", json.dumps(kd)]
    return cli


def parameter_count(model: Path) -> int:
    """Parameters stored in the model's safetensors files (tied embeddings counted once)."""
    from safetensors import safe_open

    total = 0
    for path in sorted(model.glob("*.safetensors")):
        with safe_open(str(path), "pt") as fh:
            for key in fh.keys():
                n = 1
                for d in fh.get_slice(key).get_shape():
                    n *= int(d)
                total += n
    return total


def sampling_speed(args: argparse.Namespace, models: dict[str, Path], prompts: list[str]) -> dict[str, float]:
    """vLLM generated tokens per second of each model: same prompts, n, max_tokens (EOS ignored).

    One engine per model in turn (the round's engine arguments): a warm-up pass, then
    `--speed-repeats` timed passes, of which the median counts. On a shared machine the load can
    change between the two models; the repeats show how much.
    """
    import gc
    import os
    import time

    from sdp.config import parse_config

    cfg = parse_config(round_args(args, "speed", 0, False, False))
    # The engines run in this process, so it needs the environment the round gives its sampler
    # processes (on CPU: the KV cache size, the in-process engine core)
    for key, value in (cfg.vllm_env or {}).items():
        os.environ.setdefault(key, str(value))
    from vllm import SamplingParams

    from sdp.stages.engine import build_llm

    params = SamplingParams(n=args.eval_n, temperature=1.0, max_tokens=160, ignore_eos=True, seed=0)
    times: dict[str, list[float]] = {name: [] for name in models}
    for name, path in models.items():
        llm = build_llm(str(path), cfg.engine_args or {}, seed=0)
        llm.generate(prompts[:8], params, use_tqdm=False)  # warm-up
        for _ in range(args.speed_repeats):
            start = time.perf_counter()
            outs = llm.generate(prompts, params, use_tqdm=False)
            seconds = time.perf_counter() - start
            tokens = sum(len(o.token_ids) for out in outs for o in out.outputs)
            times[name].append(tokens / seconds)
        del llm
        gc.collect()
    return {name: statistics.median(v) for name, v in times.items()}


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
    parser.add_argument("--teacher", type=Path, default=REPO / "data" / "teacher-big")
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
    # Chosen before any run: cosine is scale-free, so weight 1 means the same whatever the
    # teacher's activation scale; 'auto' spreads the student's layers over the teacher's
    parser.add_argument("--hidden-weight", type=float, default=1.0)
    parser.add_argument("--hidden-loss", choices=["mse", "cosine"], default="cosine")
    parser.add_argument("--hidden-layers", default="auto", help="'auto' or JSON pairs, e.g. '[[4, 6]]'")
    parser.add_argument("--speed-prompts", type=int, default=64, help="held-out prompts of the speed test")
    parser.add_argument("--speed-repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.hidden_layers != "auto":
        args.hidden_layers = json.loads(args.hidden_layers)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from sdp.round import main as round_main

    if not (args.teacher / "config.json").exists():
        from data.train_teacher import main as train_teacher

        logger.info("no teacher at %s: training it", args.teacher)
        cli = ["--size", "big", "--epochs", "3", "--lr", "3e-3", "--warmup-steps", "30",
               "--out", str(args.teacher), "--student", str(args.student)]
        logger.info("(python -m data.train_teacher %s)", " ".join(cli))
        train_teacher(cli)

    rows: dict[str, dict[str, list[float]]] = {}
    for seed in args.seeds:
        for key, (_, teacher, soft, hidden) in ARMS.items():
            name = f"{key}-seed{seed}"
            round_main(round_args(args, name, seed, teacher, soft, hidden))
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

    from sdp.sources.problems import load_problems, subset
    from sdp.stages.sample import PLAIN_PROMPT_TEMPLATE

    from sdp.config import parse_config

    cfg = parse_config(round_args(args, "speed", 0, False, False))
    held_out = subset(load_problems(cfg.eval_problems, cfg.eval_split), args.speed_prompts, 0)
    prompts = [PLAIN_PROMPT_TEMPLATE.format(prompt=p["prompt"]) for p in held_out]
    speed = sampling_speed(args, {"student": args.student, "teacher": args.teacher}, prompts)
    params = {"student": parameter_count(args.student), "teacher": parameter_count(args.teacher)}

    k = args.eval_n
    domains = "+".join(args.domains)
    print(f"\nteacher -> student on the bundled {domains} problems: {args.train_problems} pool problems x {args.n} "
          f"samples, {args.eval_problems} held-out x {k} samples, seeds {args.seeds}, KD alpha={args.alpha} T={args.temperature}")
    print(f"| {'student trained on':<46} | {'kept traces':>11} | {'held-out pass@1 (%)':>19} | {f'pass@{k} (%)':>11} |")
    print(f"|{'-' * 48}|{'-' * 13}|{'-' * 21}|{'-' * 13}|")
    base = rows["a"]["base"]
    print(f"| {'(student base, before the round)':<46} | {'-':>11} | {fmt(base):>19} | {'-':>11} |")
    for key, (label, *_) in ARMS.items():
        r = rows[key]
        kept = f"{statistics.mean(r['kept']):.0f}"
        print(f"| {f'({key}) {label}':<46} | {kept:>11} | {fmt(r['pass1']):>19} | {fmt(r['passk']):>11} |")
    t = rows["teacher"]
    print(f"| {'(teacher, for reference)':<46} | {'-':>11} | {fmt(t['pass1']):>19} | {fmt(t['passk']):>11} |")
    print(f"\nhidden: weight={args.hidden_weight} loss={args.hidden_loss} layers={args.hidden_layers}; "
          f"speed: vLLM, {len(prompts)} held-out prompts x {args.eval_n} samples x 160 tokens (EOS ignored), "
          f"median of {args.speed_repeats}")
    print(f"| {'model':<8} | {'parameters':>10} | {'sampling (tokens/s)':>19} |")
    print(f"|{'-' * 10}|{'-' * 12}|{'-' * 21}|")
    for name in ("teacher", "student"):
        print(f"| {name:<8} | {params[name] / 1e6:>9.2f}M | {speed[name]:>19.0f} |")
    print(f"student / teacher sampling speed: {speed['student'] / speed['teacher']:.2f}x")


if __name__ == "__main__":
    main()
