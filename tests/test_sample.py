"""The sampler on the session's shared vLLM engine, and the hf fallback."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from sdp.stages.sample import (
    PLAIN_PROMPT_TEMPLATE,
    encode_prompt,
    problem_seed,
    render_prompt,
    sample_hf,
    sample_vllm,
)
from tests.conftest import needle_problems

SAMPLING = {"n": 3, "temperature": 1.0, "max_tokens": 12}


def test_prompt_rendering_plain_and_chat_template(tiny_model):
    tok = AutoTokenizer.from_pretrained(tiny_model)
    assert render_prompt(tok, "Hi?") == PLAIN_PROMPT_TEMPLATE.format(prompt="Hi?") == "Hi?\n"
    tok.chat_template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
    assert render_prompt(tok, "Hi?") == "<user>Hi?<assistant>"
    assert (
        encode_prompt(tok, "<user>Hi?<assistant>")
        == tok("<user>Hi?<assistant>", add_special_tokens=False)["input_ids"]
    )


def test_problem_seeds_are_stable_and_distinct():
    assert problem_seed(0, "train-1", "a") == problem_seed(0, "train-1", "a")
    seeds = {problem_seed(s, tag, pid) for s in (0, 1) for tag in ("train-1", "train-2") for pid in "abc"}
    assert len(seeds) == 12


@pytest.mark.slow
def test_vllm_sampling_records_are_seeded_and_batch_independent(vllm_engine):
    problems = needle_problems("p", 5)
    first = sample_vllm(vllm_engine, problems, SAMPLING, seed=3, seed_tag="t", progress=False)
    assert len(first) == 15
    assert [(r["id"], r["sample_index"]) for r in first] == [(p["id"], i) for p in problems for i in range(3)]
    assert all(r["needle"] == p["needle"] for r, p in zip(first[::3], problems, strict=False))
    assert all(r["completion_tokens"] <= 12 and r["finish_reason"] in ("stop", "length") for r in first)
    # The same problem gets the same samples whatever else is in the batch, and in any order.
    again = sample_vllm(vllm_engine, problems[::-1][:3], SAMPLING, seed=3, seed_tag="t", progress=False)
    by_key = {(r["id"], r["sample_index"]): r["completion"] for r in first}
    assert all(by_key[(r["id"], r["sample_index"])] == r["completion"] for r in again)
    other = sample_vllm(vllm_engine, problems, SAMPLING, seed=4, seed_tag="t", progress=False)
    assert [r["completion"] for r in other] != [r["completion"] for r in first]
    # The n samples of one problem differ from each other (vLLM seeds them seed + i).
    assert len({r["completion"] for r in first[:3]}) > 1


def test_hf_backend_is_seeded_and_honours_stop_strings(tiny_model):
    problems = needle_problems("h", 2)
    a = sample_hf(str(tiny_model), problems, {**SAMPLING, "stop": ["e"]}, seed=1, progress=False)
    b = sample_hf(str(tiny_model), problems, {**SAMPLING, "stop": ["e"]}, seed=1, progress=False)
    assert [r["completion"] for r in a] == [r["completion"] for r in b]
    assert len(a) == 6 and all("e" not in r["completion"] for r in a)


@pytest.mark.slow
def test_a_task_drawn_beside_another_on_one_engine_equals_a_task_drawn_alone(tiny_model, tmp_path):
    """What the round relies on when the evaluation's sampler also draws the next round's candidates."""
    from sdp.rundir import read_jsonl
    from sdp.launch.process import run_stage
    from tests.conftest import TINY_ENGINE_ARGS, write_jsonl

    write_jsonl(tmp_path / "eval.jsonl", needle_problems("e", 3, "xyz"))
    write_jsonl(tmp_path / "train.jsonl", needle_problems("t", 4))
    train = {"problems": str(tmp_path / "train.jsonl"), "sampling": SAMPLING, "seed_tag": "train-1"}
    common = {
        "model": str(tiny_model),
        "engine_args": TINY_ENGINE_ARGS,
        "seed": 0,
        "backend": "vllm",
        "progress": False,
    }
    shared = {
        **common,
        "problems": str(tmp_path / "eval.jsonl"),
        "output": str(tmp_path / "eval_out.jsonl"),
        "sampling": {**SAMPLING, "n": 2},
        "seed_tag": "eval",
        "also": [{**train, "output": str(tmp_path / "with_eval.jsonl")}],
    }
    run_stage("sdp.stages.sample", shared, tmp_path / "shared.job.json")
    run_stage(
        "sdp.stages.sample",
        {**common, **train, "output": str(tmp_path / "alone.jsonl")},
        tmp_path / "alone.job.json",
    )
    alone = read_jsonl(tmp_path / "alone.jsonl")
    assert len(alone) == 12 and read_jsonl(tmp_path / "with_eval.jsonl") == alone
    assert len(read_jsonl(tmp_path / "eval_out.jsonl")) == 6
