"""GPU check of the scale paths: a tiny round with 2 vLLM replicas on Ray and 2 training processes.

    python scripts/gpu_check.py [--work DIR]

Needs a CUDA build of vLLM and torch (not the CPU wheels of `make setup`) and `ray`. Steps, each
printing one `OK ...` line: plan shards of tiny math problems; sample them on a local Ray with 2
replicas (one GPU each with 2+ GPUs, half a GPU each with one); sample the same set locally and
compare bytes; verify on Ray; select; train with `launcher: accelerate`, 2 processes (DDP over
NCCL with 2+ GPUs; with one GPU NCCL cannot put two ranks on it, so the 2 ranks run as gloo CPU
processes and only sampling uses the GPU), dtype bfloat16; load the checkpoint in vLLM.
Exit status 0 only if every step passed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default=None)
    args = parser.parse_args(argv)
    import torch

    gpus = torch.cuda.device_count()
    if gpus == 0:
        print("SKIP no CUDA GPU visible")
        return 0
    import ray

    from sdp.jsonl import atomic_write_jsonl
    from sdp.launch.ray_executor import RayOptions, RaySampler, init_ray, verify_on_ray
    from sdp.shards import plan_shards
    from sdp.stages.engine import build_llm
    from sdp.stages.sample import SampleJob, SampleTask, render_prompt, sample_shards
    from sdp.stages.select import select, sft_pairs
    from sdp.stages.train import TrainJob, run_train
    from tests.conftest import build_tiny_model

    work = Path(args.work or tempfile.mkdtemp(prefix="sdp-gpu-check-"))
    model = str(build_tiny_model(work / "model"))
    engine_args = {"enforce_eager": True, "max_model_len": 128, "gpu_memory_utilization": 0.3 if gpus == 1 else 0.8}
    sampling = {"n": 4, "temperature": 1.0, "max_tokens": 24}
    problems = [{"id": f"m-{i}", "domain": "math", "prompt": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(32)]

    plan = plan_shards(problems, work / "ray", shard_size=4)
    job = SampleJob(model=model, tasks=(SampleTask(shards=str(plan.root), sampling=sampling, seed_tag="check"),),
                    engine_args=engine_args, seed=0, progress=False)  # fmt: skip
    init_ray(RayOptions(num_cpus=os.cpu_count()))
    options = RayOptions(replicas=2, replica_gpus=1.0 if gpus >= 2 else 0.5)
    sampler = RaySampler(job, options)
    report = sampler.run()
    sampler.close()
    assert plan.complete("samples"), report
    print(f"OK sampled {plan.count} shards on 2 Ray replicas ({options.replica_gpus} GPU each): {report}")

    local = plan_shards(problems, work / "local", shard_size=4)
    llm = build_llm(model, engine_args, seed=0)
    list(sample_shards(llm, local.shards, sampling, 0, seed_tag="check", progress=False))
    tokenizer = llm.get_tokenizer()
    del llm
    same = all(a.samples.read_bytes() == b.samples.read_bytes() for a, b in zip(plan.shards, local.shards, strict=True))
    print(f"{'OK' if same else 'FAIL'} Ray samples identical to the local executor's: {same}")

    verify_on_ray(plan.shards, options=RayOptions(), check_sandbox=False)
    ray.shutdown()
    chosen = select(plan.iter_records("verdicts"), 2)
    prompts = {p["id"]: p["prompt"] for p in problems}
    kept = [{**r, "prompt": prompts[r["id"]]} for r in chosen.kept] or [
        {"id": p["id"], "prompt": p["prompt"], "completion": f"The answer is \\boxed{{{p['answer']}}}."} for p in problems
    ]  # a random tiny model rarely solves anything: fall back to gold traces so training still runs
    atomic_write_jsonl(work / "sft.jsonl", sft_pairs(kept, lambda p: render_prompt(tokenizer, p)))
    print(f"OK verified on Ray; {len(chosen.kept)} kept, training on {len(kept)}")

    train = TrainJob(
        init_model=model, sft_path=str(work / "sft.jsonl"), output=str(work / "checkpoint"),
        work_dir=str(work / "trainer"), stats=str(work / "train_stats.json"), seed=0, progress=False,
        sft_args={"max_steps": 4, "per_device_train_batch_size": 2, "report_to": "none", "save_strategy": "no",
                  "max_length": 128, "logging_steps": 1, "bf16": gpus >= 2, "use_cpu": gpus < 2},
        launcher="accelerate", num_processes=2, dtype="bfloat16" if gpus >= 2 else "float32",
        accelerate_config=str(REPO / "configs/accelerate" / ("ddp.yaml" if gpus >= 2 else "multi_cpu.yaml")),
    )  # fmt: skip
    stats = run_train(train, work / "train.job.json")
    ok = stats["processes"] == 2 and stats["steps"] == 4
    print(f"{'OK' if ok else 'FAIL'} trained with 2 processes: {stats}")

    llm = build_llm(str(work / "checkpoint"), engine_args, seed=0)
    from vllm import SamplingParams

    out = llm.generate(["What is 1 + 1?\n"], SamplingParams(max_tokens=8), use_tqdm=False)
    loaded = len(out[0].outputs[0].token_ids) > 0
    print(f"{'OK' if loaded else 'FAIL'} checkpoint loads in vLLM and generates")
    return 0 if same and ok and loaded else 1


if __name__ == "__main__":
    raise SystemExit(main())
