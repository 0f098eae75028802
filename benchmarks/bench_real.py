"""Speed on the real model (SmolLM2-135M-Instruct), side by side in one run on this machine.

    .venv/bin/python -m benchmarks.bench_real [--problems 32] [--max-tokens 128] [--sft-steps 4]

Sampling, greedy, the same GSM8K prompts (the real_gsm8k recipe's template) and max_tokens:
sdp's sampler (`stream_vllm`) and a bare `vllm.LLM.generate` on one engine with prefix caching off,
alternated `--repeats` times (medians), then transformers' `generate` on the same prompts, batched
with left padding. Reported: generated tokens/s and the
ratio to bare vLLM. SFT: the train stage on the same prompts' completions in bf16 autocast and
in fp32, tokens/s and the ratio (the host's native bf16 is printed: without it bf16 is emulated).
Peak RSS of a whole round is in the round's metrics.json (`peak_rss_mb`); docs/real_model.md.
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

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "configs" / "recipes" / "real_gsm8k.yaml"


def _template():
    import yaml

    from sdp.sources.templates import PromptTemplate

    cfg = yaml.safe_load(RECIPE.read_text())
    return PromptTemplate.from_config(cfg["system_prompt"], cfg["prompt_template"], cfg["few_shot"])


def bench_sampling(model: str, problems: list[dict], max_tokens: int, repeats: int) -> tuple[dict, list[dict]]:
    """sdp's sampler and bare `LLM.generate` on one engine, alternated `repeats` times: medians."""
    import statistics

    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from sdp.sources.templates import encode_prompt, render_prompt
    from sdp.stages.engine import build_llm
    from sdp.stages.sample import stream_vllm

    template = _template()
    # Prefix caching off: otherwise whichever path runs second finds the prompts' KV cached.
    llm = build_llm(model, {"enforce_eager": True, "dtype": "float32", "max_model_len": 1024, "max_num_seqs": 64,
                            "enable_prefix_caching": False}, 0)  # fmt: skip
    tok = llm.get_tokenizer()
    sampling = {"n": 1, "temperature": 0.0, "max_tokens": max_tokens}
    llm.generate([TokensPrompt(prompt_token_ids=[1, 2, 3])], SamplingParams(max_tokens=4), use_tqdm=False)  # warm-up
    prompts = [TokensPrompt(prompt_token_ids=encode_prompt(tok, render_prompt(tok, p, template), template))
               for p in problems]  # fmt: skip
    records: list[dict] = []

    def run_sdp() -> tuple[int, float]:
        nonlocal records
        start = time.perf_counter()
        [(_, records)] = list(stream_vllm(llm, [(0, problems)], sampling, 0, progress=False, template=template))
        return sum(r["completion_tokens"] for r in records), time.perf_counter() - start

    def run_bare() -> tuple[int, float]:
        start = time.perf_counter()
        outs = llm.generate(prompts, SamplingParams(**sampling), use_tqdm=False)
        return sum(len(o.outputs[0].token_ids) for o in outs), time.perf_counter() - start

    runs: dict[str, list[tuple[int, float]]] = {"sdp": [], "vllm": []}
    for i in range(repeats):
        order = (("sdp", run_sdp), ("vllm", run_bare)) if i % 2 == 0 else (("vllm", run_bare), ("sdp", run_sdp))
        for name, fn in order:
            runs[name].append(fn())
    del llm
    return {name: (r[0][0], statistics.median(s for _, s in r)) for name, r in runs.items()}, records


def bench_hf(model: str, problems: list[dict], max_tokens: int, batch: int = 16) -> tuple[int, float]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sdp.sources.templates import encode_prompt, render_prompt

    template = _template()
    tok = AutoTokenizer.from_pretrained(model)
    lm = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()
    ids = [encode_prompt(tok, render_prompt(tok, p, template), template) for p in problems]
    tokens, start = 0, time.perf_counter()
    for i in range(0, len(ids), batch):
        rows = ids[i : i + batch]
        width = max(map(len, rows))
        input_ids = torch.tensor([[tok.pad_token_id] * (width - len(r)) + r for r in rows])
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
        with torch.no_grad():
            out = lm.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=max_tokens, do_sample=False,
                              pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)  # fmt: skip
        for row in out[:, width:].tolist():
            tokens += row.index(tok.eos_token_id) + 1 if tok.eos_token_id in row else len(row)
    return tokens, time.perf_counter() - start


def bench_sft(model: str, records: list[dict], problems: list[dict], steps: int, bf16: bool) -> tuple[int, float]:
    from transformers import AutoTokenizer

    from sdp.sources.templates import render_prompt
    from sdp.stages.sft_set import tokenize_pairs
    from sdp.stages.train import TrainJob, train

    template = _template()
    tok = AutoTokenizer.from_pretrained(model)
    by_id = {p["id"]: p for p in problems}
    batch = 4
    # Exactly steps x batch examples: one epoch sees each once, so the trained tokens are their sum.
    pairs = [{"prompt": render_prompt(tok, by_id[r["id"]], template), "completion": r["completion"]}
             for r in records[: steps * batch]]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        sft = Path(tmp) / "sft.jsonl"
        sft.write_text("".join(json.dumps(p) + "\n" for p in pairs))
        job = TrainJob(init_model=model, sft_path=str(sft), output=f"{tmp}/out", work_dir=f"{tmp}/work",
                       stats=f"{tmp}/stats.json", progress=False, template=dataclass_fields(template),
                       sft_args={"max_steps": steps, "per_device_train_batch_size": batch, "bf16": bf16,
                                 "learning_rate": 1e-5, "save_strategy": "no", "report_to": "none",
                                 "logging_steps": 1, "max_length": 1024})  # fmt: skip
        stats = train(job)
    assert stats["steps"] == steps and len(pairs) == steps * batch, stats
    tokens = sum(len(ids) for ids in tokenize_pairs(tok, pairs, template=template)["input_ids"])
    return tokens, float(stats["train_seconds"])


def dataclass_fields(template) -> dict:
    import dataclasses

    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(template).items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--sft-steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3, help="sdp / bare vLLM passes, alternated (medians)")
    args = parser.parse_args(argv)

    from data.real_model import REAL_DIR, check_built
    from sdp.sources.problems import load_problems
    from sdp.stages.train import native_bf16

    check_built()
    model = str(REAL_DIR)
    problems = load_problems([{"path": str(REPO / "data/gsm8k/test.jsonl"), "format": "gsm8k"}])[: args.problems]
    rows, records = bench_sampling(model, problems, args.max_tokens, args.repeats)
    rows["hf generate"] = bench_hf(model, problems, args.max_tokens)
    print(f"sampling: {args.problems} GSM8K test prompts, greedy, max_tokens {args.max_tokens}, fp32, "
          f"{os.cpu_count()} CPUs; sdp and bare vLLM: median of {args.repeats} alternated passes, no prefix cache")
    print(f"{'path':<14}{'tokens':>8}{'seconds':>9}{'tok/s':>9}{'vs vLLM':>9}")
    base = rows["vllm"][0] / rows["vllm"][1]
    for name, (tokens, seconds) in rows.items():
        print(f"{name:<14}{tokens:>8}{seconds:>9.2f}{tokens / seconds:>9.1f}{tokens / seconds / base:>9.2f}")
    print(f"SFT: {args.sft_steps} steps x 4 examples, full fine-tuning; native bf16 on this CPU: {native_bf16()}")
    print(f"{'autocast':<14}{'tokens':>8}{'seconds':>9}{'tok/s':>9}{'vs fp32':>9}")
    sft = {"fp32": bench_sft(model, records, problems, args.sft_steps, False),
           "bf16": bench_sft(model, records, problems, args.sft_steps, True)}  # fmt: skip
    base = sft["fp32"][0] / sft["fp32"][1]
    for name, (tokens, seconds) in sft.items():
        print(f"{name:<14}{tokens:>8}{seconds:>9.2f}{tokens / seconds:>9.1f}{tokens / seconds / base:>9.2f}")


if __name__ == "__main__":
    main()
