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
    # A sample references its problem; the problem's fields are not copied into it.
    assert set(first[0]) == {"id", "domain", "sample_index", "completion", "completion_tokens", "finish_reason"}
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
def test_streamed_shards_equal_one_batch_and_finish_in_any_order(vllm_engine, tmp_path):
    """Shards queued a window at a time give exactly the samples of one big batch."""
    from sdp.shards import plan_shards
    from sdp.stages.sample import sample_shards

    problems = needle_problems("s", 7)
    plan = plan_shards(problems, tmp_path / "set", shard_size=2)
    done = list(sample_shards(vllm_engine, plan.shards, SAMPLING, 5, seed_tag="t", window=2, progress=False))
    assert sorted(s.index for s in done) == [0, 1, 2, 3] and plan.complete("samples")
    whole = sample_vllm(vllm_engine, problems, SAMPLING, seed=5, seed_tag="t", progress=False)
    assert list(plan.iter_records("samples")) == whole


@pytest.mark.slow
def test_a_task_drawn_beside_another_on_one_engine_equals_a_task_drawn_alone(tiny_model, tmp_path):
    """What the round relies on when the evaluation's sampler also draws the next round's candidates."""
    from sdp.launch.process import run_stage
    from sdp.shards import plan_shards
    from sdp.stages.sample import SampleJob, SampleTask
    from tests.conftest import TINY_ENGINE_ARGS

    evals = plan_shards(needle_problems("e", 3, "xyz"), tmp_path / "eval", shard_size=2)
    beside = plan_shards(needle_problems("t", 4), tmp_path / "beside", shard_size=3)
    alone = plan_shards(needle_problems("t", 4), tmp_path / "alone", shard_size=3)
    common = {"model": str(tiny_model), "engine_args": TINY_ENGINE_ARGS, "seed": 0, "progress": False}
    train = {"sampling": SAMPLING, "seed_tag": "train-1"}
    shared = SampleJob(**common, tasks=(
        SampleTask(str(evals.root), {**SAMPLING, "n": 2}, "eval"), SampleTask(str(beside.root), **train)))
    run_stage("sdp.stages.sample", shared.to_dict(), tmp_path / "shared.job.json")
    run_stage("sdp.stages.sample", SampleJob(**common, tasks=(SampleTask(str(alone.root), **train),)).to_dict(),
              tmp_path / "alone.job.json")  # fmt: skip
    assert len(list(alone.iter_records("samples"))) == 12
    assert list(beside.iter_records("samples")) == list(alone.iter_records("samples"))
    assert len(list(evals.iter_records("samples"))) == 6
    # A job whose shards are all written starts no engine and writes nothing.
    stamps = [p.stat().st_mtime_ns for p in sorted((tmp_path / "alone" / "samples").iterdir())]
    run_stage("sdp.stages.sample", SampleJob(**common, tasks=(SampleTask(str(alone.root), **train),)).to_dict(),
              tmp_path / "again.job.json")  # fmt: skip
    assert [p.stat().st_mtime_ns for p in sorted((tmp_path / "alone" / "samples").iterdir())] == stamps
