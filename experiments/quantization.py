"""4-bit student guided by its full-precision self: full precision vs PTQ vs QAT (CE) vs QAD (KD), on the base.

    python -m experiments.quantization --seeds 0 1 2

Four models per seed, all scored on the same held-out problems with the same sampling:
  fp:     the full-precision base (data/model);
  ptq:    the base quantized after training (`sdp.distill.quantize.quantize_ptq`), no training;
  qat:    fake-quantized (torchao QAT prepare), fine-tuned with cross-entropy on verified traces, converted;
  qad:    the same, with the same data, steps, batch and learning rate, but the loss of
          `sdp.distill.kd.KDSFTTrainer` with the full-precision base as the teacher (its own fp self).
The training traces are the bundled seed sets (data/seed_math.jsonl, data/seed_code.jsonl: worked
solutions with known answers, the base's own training data). Every model is scored on the same
seeded subset of the held-out problems; a seed changes the SFT order and the held-out sampling.
Prints one table: held-out pass@1 per domain (mean ± sd over seeds), checkpoint size, and vLLM
sampling speed (completion tokens per second of a fixed batch of 128 x 64 tokens,
engine start excluded; one engine per model samples every seed, then the batch).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ENGINE_ARGS = {"enforce_eager": True, "enable_chunked_prefill": False, "max_model_len": 256,
               "max_num_seqs": 256, "dtype": "float32"}
SPEED_PROMPTS = 128
ARMS = {
    "fp": "full precision (base)",
    "ptq": "PTQ (no training)",
    "qat": "QAT, CE only",
    "qad": "QAD, KD from the fp self",
}
logger = logging.getLogger(__name__)


def load_pairs(tokenizer: Any, files: list[Path]) -> dict[str, list[list[int]]]:
    """input_ids / labels of the seed traces, tokenized like the train stage (completion-only loss)."""
    from sdp.stages.sample import encode_prompt, render_prompt

    input_ids, labels = [], []
    for path in files:
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            prompt = encode_prompt(tokenizer, render_prompt(tokenizer, rec["prompt"]))
            completion = list(tokenizer(rec["completion"], add_special_tokens=False)["input_ids"])
            completion.append(tokenizer.eos_token_id)
            input_ids.append(prompt + completion)
            labels.append([-100] * len(prompt) + completion)
    return {"input_ids": input_ids, "labels": labels}


def train_quantized(args: argparse.Namespace, seed: int, kd: bool, out: Path) -> dict[str, Any]:
    """QAT (or QAD with `kd`) of the base: the train stage's two-line hook around TRL's trainer."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from sdp.distill.kd import KDSFTTrainer
    from sdp.distill.quantize import apply_quantize, finish_quantize, kd_teacher

    quantize = {"scheme": args.scheme, "group_size": args.group_size}
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    dataset = Dataset.from_dict(load_pairs(tokenizer, args.traces))
    torch.manual_seed(seed)
    model = apply_quantize(AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32), quantize)
    sft = SFTConfig(
        output_dir=str(out.parent / f"{out.name}-trainer"), max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size, learning_rate=args.lr, lr_scheduler_type="cosine",
        weight_decay=0.0, logging_steps=25, save_strategy="no", report_to="none", max_length=256,
        seed=seed, data_seed=seed, use_cpu=True, disable_tqdm=True,
    )
    kwargs: dict[str, Any] = {"model": model, "args": sft, "train_dataset": dataset, "processing_class": tokenizer}
    trainer_cls = SFTTrainer
    if kd:
        trainer_cls = KDSFTTrainer
        kd_cfg = {"alpha": args.alpha, "temperature": args.temperature}
        kwargs.update(kd_cfg, teacher_model=kd_teacher(kd_cfg, None, str(args.model)))
    start = time.perf_counter()
    result = trainer_cls(**kwargs).train()
    stats = finish_quantize(model, quantize, tokenizer, out)
    return {**stats, "train_loss": result.training_loss, "train_seconds": time.perf_counter() - start}


def sample_probe(model: str, problems_path: str, seeds: list[int], n: int, out_dir: str) -> dict[str, Any]:
    """In one vLLM engine: the held-out samples of every seed, then the speed of one fixed batch.

    Run in its own process by `sample_model`; one engine start per model instead of one per seed.
    """
    from vllm import SamplingParams

    from sdp.rundir import atomic_write_jsonl, read_jsonl
    from sdp.stages.engine import build_llm
    from sdp.stages.sample import sample_vllm

    llm = build_llm(model, ENGINE_ARGS, seed=0)
    problems = read_jsonl(problems_path)
    for seed in seeds:
        records = sample_vllm(llm, problems, {"n": n, "temperature": 1.0, "max_tokens": 64}, seed,
                              seed_tag="eval", progress=False)
        atomic_write_jsonl(Path(out_dir) / f"samples-seed{seed}.jsonl", records)
    prompts = [p["prompt"] + "\n" for p in problems]
    batch = (prompts * (SPEED_PROMPTS // len(prompts) + 1))[:SPEED_PROMPTS]
    params = SamplingParams(temperature=1.0, max_tokens=64, ignore_eos=True, seed=0)
    start = time.perf_counter()
    outs = llm.generate(batch, params, use_tqdm=False)
    seconds = time.perf_counter() - start
    generated = sum(len(o.outputs[0].token_ids) for o in outs)
    return {"tokens_per_second": generated / seconds, "quantization": llm.llm_engine.model_config.quantization}


def sample_model(model: Path, problems_path: Path, seeds: list[int], n: int, out_dir: Path) -> dict[str, Any]:
    """`sample_probe` in a child process (vLLM's memory is released when it exits)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1"}
    cmd = [sys.executable, "-m", "experiments.quantization", "--sample-probe", str(model), str(problems_path),
           str(n), str(out_dir), *map(str, seeds)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"sampling {model} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def score_all(samples: dict[tuple[str, int], Path], problems: dict[str, dict]) -> dict[tuple[str, int], dict]:
    """Verify every (arm, seed) sample file and score each per domain.

    Records are verified one by one (`verify_one`) on two threads: the code verifier's work is its
    sandbox subprocess, and no process pool has to start on the shared machine.
    """
    from concurrent.futures import ThreadPoolExecutor

    from sdp.rundir import read_jsonl
    from sdp.stages.evaluate import eval_metrics
    from sdp.stages.verify import verify_one

    keys, records = [], []
    for key, path in samples.items():
        for record in read_jsonl(path):
            keys.append(key)
            records.append({**problems[record["id"]], **record})  # the gold fields the verifiers need
    with ThreadPoolExecutor(2) as pool:
        verdicts = list(pool.map(lambda r: verify_one(r, None, 5.0), records))
    verified = [{**r, "verdict": v} for r, v in zip(records, verdicts, strict=True)]
    return {key: eval_metrics([r for k, r in zip(keys, verified, strict=True) if k == key]) for key in samples}


def fmt(values: list[float]) -> str:
    mean = 100 * statistics.mean(values)
    return f"{mean:5.1f}" if len(values) == 1 else f"{mean:5.1f} ± {100 * statistics.stdev(values):.1f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "data" / "model")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "quantization")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--domains", nargs="+", default=["math", "code"], choices=["math", "code"])
    parser.add_argument("--traces", type=Path, nargs="+",
                        default=[REPO / "data" / "seed_math.jsonl", REPO / "data" / "seed_code.jsonl"])
    parser.add_argument("--scheme", default="int4_weight")
    parser.add_argument("--group-size", type=int, default=32)
    parser.add_argument("--eval-problems", type=int, default=200, help="held-out problems (seeded subset)")
    parser.add_argument("--eval-n", type=int, default=4, help="samples per held-out problem (pass@1 = mean)")
    # One training budget for QAT and QAD, chosen before any run: a short fine-tune, not a retrain
    parser.add_argument("--max-steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--sample-probe", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sample_probe:
        model, problems, n, out, *seeds = args.sample_probe
        print(json.dumps(sample_probe(model, problems, [int(x) for x in seeds], int(n), out)))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sdp.distill.quantize import checkpoint_bytes, quantize_ptq, save_quantized
    from sdp.rundir import atomic_write_jsonl
    from sdp.sources.problems import load_problems, subset

    torch.set_num_threads(1)  # a shared 2-core machine: one busy-waiting OpenMP thread per process
    args.out.mkdir(parents=True, exist_ok=True)
    quantize = {"scheme": args.scheme, "group_size": args.group_size}
    problems_path = args.out / "eval_problems.jsonl"
    eval_files = [str(REPO / "data" / f"{d}_eval.jsonl") for d in args.domains]
    eval_problems = subset(load_problems(eval_files, "test"), args.eval_problems, 0)
    atomic_write_jsonl(problems_path, eval_problems)
    by_id = {p["id"]: dict(p) for p in eval_problems}

    models: dict[str, list[Path]] = {"fp": [args.model], "ptq": [args.out / "ptq"]}
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    save_quantized(quantize_ptq(model, quantize), AutoTokenizer.from_pretrained(args.model), models["ptq"][0], quantize)
    train_stats: dict[str, list[dict]] = {"qat": [], "qad": []}
    for arm in ("qat", "qad"):
        models[arm] = [args.out / f"{arm}-seed{seed}" for seed in args.seeds]
        for seed, path in zip(args.seeds, models[arm], strict=True):
            train_stats[arm].append(train_quantized(args, seed, arm == "qad", path))
            logger.info("%s seed %d: %s", arm, seed, train_stats[arm][-1])

    speeds: dict[str, list[float]] = {arm: [] for arm in ARMS}
    vllm_quant: dict[str, str] = {}
    samples: dict[tuple[str, int], Path] = {}
    for arm, paths in models.items():
        # fp and ptq: one model, sampled with every seed; qat and qad: one trained model per seed
        runs = [(paths[0], args.seeds)] if len(paths) == 1 else [(p, [s]) for p, s in zip(paths, args.seeds)]
        for path, seeds in runs:
            out = args.out / "eval" / (arm if len(paths) == 1 else path.name)
            probe = sample_model(path, problems_path, seeds, args.eval_n, out)
            speeds[arm].append(probe["tokens_per_second"])
            vllm_quant[arm] = str(probe["quantization"])
            samples.update({(arm, seed): out / f"samples-seed{seed}.jsonl" for seed in seeds})
    scores: dict[str, dict[str, list[float]]] = {arm: {} for arm in ARMS}
    for (arm, seed), result in score_all(samples, by_id).items():
        (samples[arm, seed].parent / f"scores-seed{seed}.json").write_text(json.dumps(result, indent=2))
        for domain, s in result.items():
            scores[arm].setdefault(domain, []).append(s["pass@1"])
    sizes = {arm: checkpoint_bytes(paths[0]) for arm, paths in models.items()}

    domains = [d for d in (*args.domains, "all") if d in scores["fp"]]
    print(f"\n{args.scheme} (group {args.group_size}) on {args.model.name}: held-out pass@1 (%) on {args.eval_problems} "
          f"problems x {args.eval_n} samples at T=1, seeds {args.seeds}; QAT/QAD: {args.max_steps} steps x "
          f"{args.batch_size} on {' + '.join(p.name for p in args.traces)}, lr {args.lr} cosine, "
          f"KD alpha={args.alpha} T={args.temperature}")
    head = "".join(f" {d + ' pass@1':>15} |" for d in domains)
    print(f"| {'model':<26} |{head} {'size (MB)':>9} | {'tokens/s':>8} | {'vLLM quant':>10} |")
    print(f"|{'-' * 28}|" + "".join(f"{'-' * 17}|" for _ in domains) + f"{'-' * 11}|{'-' * 10}|{'-' * 12}|")
    for arm, label in ARMS.items():
        cells = "".join(f" {fmt(scores[arm][d]):>15} |" for d in domains)
        print(f"| {label:<26} |{cells} {sizes[arm] / 1e6:>9.2f} | {statistics.mean(speeds[arm]):>8.0f} | "
              f"{vllm_quant[arm]:>10} |")
    fp, ptq = (statistics.mean(scores[a]["all"]) for a in ("fp", "ptq"))
    for arm in ("qat", "qad"):
        got = statistics.mean(scores[arm]["all"])
        share = f"{100 * (got - ptq) / (fp - ptq):.0f}%" if fp != ptq else "n/a (PTQ lost nothing)"
        print(f"{arm}: recovers {share} of PTQ's pass@1 drop ({100 * (fp - ptq):.1f} points, all domains); "
              f"train loss per seed " + ", ".join(f"{t['train_loss']:.4f}" for t in train_stats[arm]))
    for arm in ARMS:
        print(f"{arm} pass@1 per seed (all): " + ", ".join(f"{100 * v:.1f}" for v in scores[arm]["all"]))


if __name__ == "__main__":
    main()
