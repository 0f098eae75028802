"""vLLM's CPU build loads sdp's torchao checkpoints and computes what transformers computes from them.

The engine runs in a child process (`python -m tests.test_quantize_vllm MODEL`) so that it does not
share the test process with the session's other engine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY_ENGINE_ARGS

TOKENS = [5, 17, 42, 99, 3, 250, 61, 7, 120, 33, 8, 200, 14, 90]


def vllm_prompt_logprobs(model: str) -> dict:
    """vLLM's quantization method for `model` and log p(token t | tokens < t) of `TOKENS`, t >= 1."""
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    llm = LLM(model=model, seed=0, **TINY_ENGINE_ARGS)
    out = llm.generate([TokensPrompt(prompt_token_ids=TOKENS)], SamplingParams(max_tokens=1, prompt_logprobs=0))
    logprobs = out[0].prompt_logprobs
    return {
        "quantization": llm.llm_engine.model_config.quantization,
        "logprobs": [logprobs[i][TOKENS[i]].logprob for i in range(1, len(TOKENS))],
    }


def hf_prompt_logprobs(model_path: Path) -> list[float]:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_path).eval()
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([TOKENS])).logits[0].float(), -1)
    return [logp[i - 1, TOKENS[i]].item() for i in range(1, len(TOKENS))]


@pytest.mark.slow
@pytest.mark.vllm
@pytest.mark.parametrize("scheme", ["int4_weight", "int8_dynamic_act_int4_weight"])
def test_vllm_cpu_loads_the_quantized_checkpoint(tiny_model: Path, tmp_path: Path, scheme: str) -> None:
    pytest.importorskip("vllm")
    from sdp.quantize import main as quantize_main

    out = tmp_path / scheme
    quantize_main(["--model", str(tiny_model), "--scheme", scheme, "-o", str(out)])
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.test_quantize_vllm", str(out)],
        env=env, capture_output=True, text=True, check=False, cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["quantization"] == "torchao"  # read from config.json, no engine argument
    vllm = result["logprobs"]
    quantized, full = hf_prompt_logprobs(out), hf_prompt_logprobs(tiny_model)
    assert max(abs(a - b) for a, b in zip(vllm, quantized, strict=True)) < 1e-2
    # ... and it is the quantized model vLLM ran, not the full-precision weights
    assert max(abs(a - b) for a, b in zip(quantized, full, strict=True)) > 1e-3


if __name__ == "__main__":
    print(json.dumps(vllm_prompt_logprobs(sys.argv[1])))
