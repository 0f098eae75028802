"""Sampling one shard set with the local executor and with Ray (1 and 2 replicas): wall time, tokens/s.

    python -m benchmarks.bench_ray [--model PATH] [--problems 96] [--shard-size 8] [--max-tokens 64]

Each arm samples the same freshly planned shard set (same problems, seeds and engine arguments;
the samples files are checked to be identical across arms). "start" is the engine start (for Ray:
the replicas' actors, in parallel), "sample" the sampling itself; tokens/s counts completion tokens
over "sample". Ray's overhead at 1 replica is (Ray - local) / local for both. Without `--model`,
the tests' tiny random Llama is built in a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ENGINE_ARGS = {"enforce_eager": True, "enable_chunked_prefill": False, "max_model_len": 128, "max_num_seqs": 64, "dtype": "float32"}


def _plan(root: Path, count: int, shard_size: int):
    from sdp.shards import plan_shards

    problems = [{"id": f"m-{i}", "domain": "math", "prompt": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(count)]
    return plan_shards(problems, root, shard_size)


def _tokens(plan) -> int:
    return sum(int(r["completion_tokens"]) for r in plan.iter_records("samples"))


def _samples(plan) -> bytes:
    return b"".join(s.samples.read_bytes() for s in plan.shards)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--problems", type=int, default=96)
    parser.add_argument("--shard-size", type=int, default=8)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray")
    args = parser.parse_args(argv)

    import ray

    from sdp.launch.ray_executor import RayOptions, RaySampler, init_ray
    from sdp.stages.engine import build_llm
    from sdp.stages.sample import SampleJob, SampleTask, sample_shards

    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    model = args.model
    if model is None:
        from tests.conftest import build_tiny_model

        model = str(build_tiny_model(work / "model"))
    sampling = {"n": args.n, "temperature": 1.0, "max_tokens": args.max_tokens, "ignore_eos": True}
    rows = []

    plan = _plan(work / "local", args.problems, args.shard_size)
    t0 = time.perf_counter()
    llm = build_llm(model, ENGINE_ARGS, seed=0)
    t1 = time.perf_counter()
    list(sample_shards(llm, plan.shards, sampling, 0, seed_tag="bench", progress=False))
    t2 = time.perf_counter()
    reference = _samples(plan)
    rows.append(("local", t1 - t0, t2 - t1, _tokens(plan)))
    del llm

    init_ray(RayOptions(num_cpus=args.cpus))
    try:
        for replicas in (1, 2):
            root = work / f"ray-{replicas}"
            plan = _plan(root, args.problems, args.shard_size)
            job = SampleJob(
                model=model,
                tasks=(SampleTask(shards=str(root), sampling=sampling, seed_tag="bench"),),
                engine_args=ENGINE_ARGS,
                seed=0,
                progress=False,
            )
            t0 = time.perf_counter()
            sampler = RaySampler(job, RayOptions(replicas=replicas))
            t1 = time.perf_counter()
            sampler.run()
            t2 = time.perf_counter()
            sampler.close()
            if _samples(plan) != reference:
                raise SystemExit(f"ray with {replicas} replicas wrote different samples than local")
            rows.append((f"ray x{replicas}", t1 - t0, t2 - t1, _tokens(plan)))
    finally:
        ray.shutdown()

    print(f"{args.problems} problems x {args.n} samples x {args.max_tokens} tokens, shards of {args.shard_size}, "
          f"{os.cpu_count()} CPUs; samples identical across arms")  # fmt: skip
    print(f"{'executor':<10} {'start s':>8} {'sample s':>9} {'total s':>8} {'tokens':>8} {'tokens/s':>9}")
    for name, start, sample, tokens in rows:
        print(f"{name:<10} {start:>8.2f} {sample:>9.2f} {start + sample:>8.2f} {tokens:>8d} {tokens / sample:>9.1f}")
    local, one = rows[0], rows[1]
    print(
        f"ray overhead at 1 replica vs local: sampling {100 * (one[2] - local[2]) / local[2]:+.1f}%, "
        f"total {100 * (one[1] + one[2] - local[1] - local[2]) / (local[1] + local[2]):+.1f}%"
    )
    print(json.dumps({name: {"start_s": round(s, 3), "sample_s": round(x, 3), "tokens": t} for name, s, x, t in rows}))


if __name__ == "__main__":
    main()
