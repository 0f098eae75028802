"""sdp's sampler against a bare `vllm.LLM.generate` on the same engine, prompts and parameters.

    .venv/bin/python -m benchmarks.bench_sampler [--model data/model] [--problems 64] [--n 4] [--max-tokens 128]

Both sides get the same rendered prompts and the same per-prompt `SamplingParams` (including
the per-problem seeds sdp uses), on one engine, interleaved over several repeats; the best
wall time of each is compared. The overhead is sdp's extra cost: prompt rendering and
tokenization, building per-problem params, collecting records. Goal: at most 5%.
Without `--model` (and without data/model) a random tiny Llama is built in a temp dir.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

REPO = Path(__file__).resolve().parents[1]


def load_prompts(count: int) -> list[dict]:
    path = REPO / "data" / "math_train.jsonl"
    if path.exists():
        from sdp.jsonl import iter_jsonl

        rows = [row for _, row in zip(range(count), iter_jsonl(path))]
    else:
        rows = [
            {"id": f"p{i}", "domain": "math", "prompt": f"What is {i} + {i}?", "answer": str(2 * i)}
            for i in range(count)
        ]
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--problems", type=int, default=64)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    from vllm import SamplingParams

    from sdp.stages.engine import build_llm
    from sdp.stages.sample import problem_seed, render_prompt, sample_vllm

    model = args.model or (
        str(REPO / "data" / "model") if (REPO / "data" / "model" / "config.json").exists() else None
    )
    tmp = None
    if model is None:
        sys.path.insert(0, str(REPO))
        from tests.conftest import build_tiny_model

        tmp = tempfile.TemporaryDirectory()
        model = str(build_tiny_model(Path(tmp.name)))
    problems = load_prompts(args.problems)
    # ignore_eos: both sides generate exactly max_tokens, so token counts cannot differ by chance.
    sampling = {
        "n": args.n,
        "temperature": 1.0,
        "top_p": 1.0,
        "max_tokens": args.max_tokens,
        "ignore_eos": True,
    }

    start = time.perf_counter()
    llm = build_llm(
        model,
        {"enforce_eager": True, "dtype": "float32", "max_num_seqs": 256, "enable_chunked_prefill": False},
        seed=0,
    )
    engine_start = time.perf_counter() - start
    tokenizer = llm.get_tokenizer()

    def bare() -> tuple[float, int, list[str]]:
        prompts = [render_prompt(tokenizer, p["prompt"]) for p in problems]
        params = [SamplingParams(**sampling, seed=problem_seed(0, "bench", p["id"])) for p in problems]
        t = time.perf_counter()
        outs = llm.generate(prompts, params, use_tqdm=False)
        elapsed = time.perf_counter() - t
        return (
            elapsed,
            sum(len(o.token_ids) for r in outs for o in r.outputs),
            [o.text for r in outs for o in sorted(r.outputs, key=lambda o: o.index)],
        )

    def ours() -> tuple[float, int, list[str]]:
        t = time.perf_counter()
        records = sample_vllm(llm, problems, sampling, seed=0, seed_tag="bench", progress=False)
        elapsed = time.perf_counter() - t
        return elapsed, sum(r["completion_tokens"] for r in records), [r["completion"] for r in records]

    bare()  # warm-up
    ours()
    best = {"bare": (float("inf"), 0), "sdp": (float("inf"), 0)}
    same = True
    for _ in range(args.repeats):
        for name, fn in (("bare", bare), ("sdp", ours)):
            elapsed, tokens, texts = fn()
            if name == "bare":
                reference = texts
            else:
                same &= texts == reference
            if elapsed < best[name][0]:
                best[name] = (elapsed, tokens)
    bare_tps = best["bare"][1] / best["bare"][0]
    sdp_tps = best["sdp"][1] / best["sdp"][0]
    overhead = 100 * (best["sdp"][0] / best["bare"][0] - 1)
    print(
        f"model {model}: {len(problems)} prompts x n={args.n}, max_tokens={args.max_tokens}, best of {args.repeats}; engine start {engine_start:.1f} s"
    )
    print(
        f"bare vllm.LLM.generate : {bare_tps:9.0f} tokens/s ({best['bare'][1]} tokens in {best['bare'][0]:.3f} s)"
    )
    print(
        f"sdp.stages.sample.sample_vllm : {sdp_tps:9.0f} tokens/s ({best['sdp'][1]} tokens in {best['sdp'][0]:.3f} s)"
    )
    print(f"sampler overhead       : {overhead:+.1f}% (goal <= 5%); identical completions: {same}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
