"""Streaming at scale: verify + select of synthetic math rounds of growing size, and overlap vs serial.

    .venv/bin/python -m benchmarks.bench_scale [--sizes 40000 400000] [--workers N] [--chars 2000]
                                                [--round | --no-round]

Part 1. For each size, a synthetic round (problems of `--per-problem` samples with ~`--chars`-character
completions ending in a boxed answer, half of them right) is written as shards, then one fresh
process runs the round's verify stage over every shard (the real `math` verifier, `--workers`
processes) and streams the verdicts through selection into an SFT file, as `sdp.round` does.
It prints the peak resident memory of that process and of its largest worker, the verification
throughput, and the ratio of peak memory between the largest and the smallest size (the goal:
400k within 1.3x of 40k, under 1.5 GB).

Part 2 (`--round`, default on). The same small real round (the shipped base model `data/model`
or a random tiny Llama, a few hundred bundled problems) twice, with `overlap_verify` true and
false: wall time of the whole run and of round 1's sample + verify stages.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORDS = "so we add then the total is and next multiply by which gives each part of".split()


def generate(root: Path, samples: int, per_problem: int, chars: int, shard_size: int) -> None:
    """Write a synthetic round: problem shards and sample shards (streamed, constant memory)."""
    from sdp.jsonl import JsonlWriter
    from sdp.shards import plan_shards

    problems = samples // per_problem
    rng = random.Random(0)
    plan = plan_shards(
        ({"id": f"p{i}", "domain": "math", "prompt": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(problems)),
        root,
        shard_size,
    )
    for shard in plan.shards:
        with JsonlWriter(shard.samples) as out:
            for problem in shard.load_problems().values():
                gold = int(problem["answer"])
                for j in range(per_problem):
                    filler = " ".join(rng.choice(WORDS) for _ in range(chars // 5))[: chars - 40]
                    answer = gold if j % 2 == 0 else gold + 1
                    out.write({"id": problem["id"], "domain": "math", "sample_index": j,
                               "completion": f"{filler}. The answer is $\\boxed{{{answer}}}$."})  # fmt: skip


def measure(root: Path, workers: int | None) -> dict:
    """Verify every shard and select, as the round does; report time, throughput and peak memory."""
    from sdp.jsonl import JsonlWriter, iter_jsonl
    from sdp.shards import ShardPlan
    from sdp.stages.select import Selector, sft_pair
    from sdp.stages.verify import Verification, summarize

    plan = ShardPlan.load(root)
    assert plan is not None
    start = time.perf_counter()
    with Verification(workers=workers, timeout=5.0) as verification:
        used = verification.workers
        for shard in plan.pending("verdicts"):
            verification.verify_shard(shard)
    verify_seconds = time.perf_counter() - start
    selector = Selector(1, grouped=True)
    with JsonlWriter(root / "sft.jsonl") as out:
        for shard in plan.shards:
            problems = shard.load_problems()
            for record in iter_jsonl(shard.verdicts):
                if selector.add(record):
                    out.write(sft_pair(record, problems[record["id"]]["prompt"]))
    counts = summarize(plan.iter_records("verdicts"))
    return {
        "samples": counts["total"],
        "ok": counts["ok"],
        "kept": selector.counts["kept"],
        "workers": used,
        "verify_seconds": round(verify_seconds, 1),
        "samples_per_s": round(counts["total"] / verify_seconds, 1),
        "select_seconds": round(time.perf_counter() - start - verify_seconds, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "worker_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
    }


def scale_part(args: argparse.Namespace) -> None:
    rows = []
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix=f"bench-scale-{size}-") as tmp:
            generate(Path(tmp), size, args.per_problem, args.chars, args.shard_size)
            cmd = [sys.executable, "-m", "benchmarks.bench_scale", "--measure", tmp]
            if args.workers:
                cmd += ["--workers", str(args.workers)]
            out = subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, text=True).stdout
            row = json.loads(out.strip().splitlines()[-1])
        rows.append(row)
        print(
            f"{row['samples']:>7} samples ({args.chars}-char completions): verify {row['verify_seconds']} s "
            f"({row['samples_per_s']} samples/s, {row['workers']} workers), select {row['select_seconds']} s; "
            f"peak RSS {row['peak_rss_mb']} MB (largest worker {row['worker_peak_rss_mb']} MB); "
            f"{row['ok']} ok, {row['kept']} kept",
            flush=True,
        )
    if len(rows) > 1:
        small, large = rows[0], rows[-1]
        print(
            f"peak RSS ratio {large['samples']} vs {small['samples']} samples: "
            f"{large['peak_rss_mb'] / small['peak_rss_mb']:.2f}x (stage process), "
            f"{large['worker_peak_rss_mb'] / small['worker_peak_rss_mb']:.2f}x (largest worker)"
        )


def round_part(args: argparse.Namespace) -> None:
    model = REPO / "data" / "model"
    with tempfile.TemporaryDirectory(prefix="bench-scale-round-") as tmp:
        if not (model / "config.json").exists():
            sys.path.insert(0, str(REPO))
            from tests.conftest import build_tiny_model

            model = build_tiny_model(Path(tmp) / "tiny")
        results = {}
        for overlap in ("true", "false"):
            cmd = [sys.executable, "-m", "sdp.round", "--config", "configs/default.yaml", "--model", str(model),
                   "--name", f"overlap-{overlap}", "--output_dir", tmp, "--rounds", "1", "--progress", "false",
                   "--max_train_problems", str(args.round_problems), "--max_eval_problems", "64",
                   "--shard_size", str(max(1, args.round_problems // 8)), "--overlap_verify", overlap,
                   "--sft", "{max_steps: 5}"]  # fmt: skip
            if args.workers:
                cmd += ["--verify_workers", str(args.workers)]
            start = time.perf_counter()
            subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, text=True)
            wall = time.perf_counter() - start
            manifest = json.loads((Path(tmp) / f"overlap-{overlap}" / "manifest.json").read_text())
            # Round 1's candidates are drawn by the baseline evaluation's sampler, verified in round 1.
            stages = ["round-0/evaluate", "round-1/sample", "round-1/verify"]
            results[overlap] = (wall, sum(manifest[s]["seconds"] for s in stages))
            print(f"overlap_verify={overlap}: run {wall:.1f} s; baseline evaluate + round-1 sample + verify "
                  f"{results[overlap][1]:.1f} s", flush=True)  # fmt: skip
        (on, on_stages), (off, off_stages) = results["true"], results["false"]
        print(f"overlapped vs serial: run {on:.1f} vs {off:.1f} s ({off / on:.2f}x); "
              f"sampling+verification stages {on_stages:.1f} vs {off_stages:.1f} s")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[40_000, 400_000])
    parser.add_argument("--workers", type=int, default=None, help="verification workers (default: usable CPUs)")
    parser.add_argument("--chars", type=int, default=2000, help="completion length in characters")
    parser.add_argument("--per-problem", type=int, default=64)
    parser.add_argument("--shard-size", type=int, default=256)
    parser.add_argument("--round", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--round-problems", type=int, default=256)
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(Path(args.measure), args.workers)))
        return
    scale_part(args)
    if args.round:
        round_part(args)


if __name__ == "__main__":
    main()
