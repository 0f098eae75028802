"""STaR rationalization (hint leaks, the share cap, the hint never in a kept prompt), the pass-rate
filter's band edges, the budget config fields, and one adaptive + rationalize round end to end."""

from __future__ import annotations

import json

import pytest

from sdp.config import RoundConfig, parse_config
from sdp.fingerprint import config_fingerprint
from sdp.round_budget import FILTER_FILE, apply_pass_rate_filter, filter_by_pass_rate, in_band
from sdp.stages.rationalize import (
    DEFAULT_HINT_TEMPLATE,
    QUOTES_HINT,
    flag_leak,
    hint_problem,
    quotes_hint,
    rationalized_limit,
)
from sdp.stages.select import Selector

PROBLEM = {"id": "m1", "domain": "math", "prompt": "Eli has 13 books. Then 4 more. How many?", "answer": "17"}


@pytest.mark.parametrize("completion,leaks", [
    ("13 + 4 = 17. The answer is \\boxed{17}.", False),
    ("17", False),
    ("(Hint: the final answer is 17.) So 17.", True),          # rule 1: the hint verbatim
    ("as  the   HINT says, 17", True),                          # rule 2: the word hint, any case/spacing
    ("We know The Final Answer is\n17 from above.", True),      # rule 3: the hint phrase with the gold
    ("the final answer is 18", False),                         # the phrase with another number is no leak
    ("hinting nothing: 17", False),                            # "hint" must be a word
])
def test_quotes_hint_rules(completion, leaks):
    assert quotes_hint(completion, PROBLEM) is leaks


def test_flag_leak_rejects_only_verified_leaks_with_the_reason():
    ok = {"id": "m1", "completion": "the hint: 17", "verdict": {"ok": True, "reason": "match", "answer": "17"}}
    assert flag_leak(ok, PROBLEM, DEFAULT_HINT_TEMPLATE)["verdict"] == {"ok": False, "reason": QUOTES_HINT,
                                                                         "answer": "17"}
    wrong = {**ok, "verdict": {"ok": False, "reason": "mismatch", "answer": "3"}}
    assert flag_leak(wrong, PROBLEM, DEFAULT_HINT_TEMPLATE) == wrong
    clean = {**ok, "completion": "13 + 4 = 17"}
    assert flag_leak(clean, PROBLEM, DEFAULT_HINT_TEMPLATE) == clean


def test_hint_prompt_keeps_braces_and_states_the_gold():
    problem = {**PROBLEM, "prompt": "Put it in \\boxed{}: 2 + 2?", "answer": 4}
    hinted = hint_problem(problem, "{prompt} [answer: {answer}]")
    assert hinted["prompt"] == "Put it in \\boxed{}: 2 + 2? [answer: 4]" and hinted["id"] == problem["id"]
    assert problem["prompt"] == "Put it in \\boxed{}: 2 + 2?"  # the original is untouched


@pytest.mark.parametrize("plain,share,limit", [(10, None, None), (10, 1.0, None), (10, 0.0, 0), (3, 0.5, 3),
                                               (3, 0.25, 1), (0, 0.5, 0), (9, 0.1, 1)])
def test_rationalized_limit(plain, share, limit):
    assert rationalized_limit(plain, share) == limit
    if limit is not None and plain + limit:
        assert limit / (plain + limit) <= share


def _rec(pid, i, ok, text, hinted=False):
    record = {"id": pid, "sample_index": i, "completion": text, "verdict": {"ok": ok}}
    return {**record, "rationalized": True} if hinted else record


def test_selector_counts_rationalized_apart_and_caps_them_deterministically():
    records = [_rec("a", 0, True, "x"), _rec("a", 1, True, "y"),
               _rec("b", 0, False, "p"), _rec("b", 1, True, "q", True), _rec("b", 2, True, "q ", True),
               _rec("c", 0, False, "p"), _rec("c", 1, True, "r", True), _rec("d", 0, False, "p"),
               _rec("d", 1, True, "s", True)]
    selector = Selector(1, grouped=True, rationalized_limit=1)
    kept = [(r["id"], r["sample_index"]) for r in records if selector.add(r)]
    assert kept == [("a", 0), ("b", 1)]  # the first rationalized one in stream order; "q " is a duplicate
    summary = selector.summary()
    assert summary["rationalized_kept"] == 1 and summary["rationalized_duplicates"] == 1
    assert summary["rationalized_over_share"] == 2 and summary["problems_rationalized"] == 1
    assert selector.solve_rates == {"a": 1.0, "b": 0.0, "c": 0.0, "d": 0.0}  # hinted samples are not solves
    assert "rationalized_kept" not in Selector(1).summary()


def test_the_hint_never_reaches_a_kept_prompt(tiny_model, tmp_path):
    from sdp.jsonl import atomic_write_jsonl, read_jsonl
    from sdp.round_stages import select_stage
    from sdp.rundir import RunDir
    from sdp.shards import plan_shards
    from sdp.sources.templates import render_prompt

    cfg = parse_config(["--model", str(tiny_model), "--rationalize", "true", "--max_rationalized_share", "0.5"])
    run = RunDir(tmp_path / "run")
    problems = [{**PROBLEM, "id": f"m{i}", "answer": str(i)} for i in range(4)]
    plan = plan_shards(problems, run.round_dir(1), 2)
    template = cfg.rationalize_template
    for shard in plan.shards:
        rows = []
        for p in shard.load_problems().values():
            rows.append({**_rec(p["id"], 0, p["id"] == "m0", f"plain {p['id']}"), "wave": 0})
            hinted = hint_problem(p, template)["prompt"]  # what the sampler saw, never stored
            rows.append({**_rec(p["id"], 1, True, f"worked {p['id']}", True), "wave": 1})
            assert "Hint" in hinted
        atomic_write_jsonl(shard.verdicts, rows)
    info = select_stage(run, cfg, 1, plan)
    sft = read_jsonl(run.round_dir(1) / "sft.jsonl")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    by_id = {p["id"]: p for p in problems}
    assert [r["id"] for r in sft] == ["m0", "m1"]  # 1 plain + 1 rationalized: share 0.5
    for r in sft:
        assert r["prompt"] == render_prompt(tok, by_id[r["id"]], cfg.template) and "Hint" not in r["prompt"]
    assert info["rationalized_kept"] == 1 and info["rationalized_over_share"] == 2


def test_pass_rate_filter_band_edges_are_inclusive_and_unseen_problems_are_kept(tmp_path):
    rates = {"lo": 0.2, "edge_lo": 0.25, "mid": 0.5, "edge_hi": 0.75, "hi": 0.8, "one": 1.0, "zero": 0.0}
    problems = [{"id": pid} for pid in [*rates, "new"]]
    kept, report = filter_by_pass_rate(problems, rates, [0.25, 0.75])
    assert [p["id"] for p in kept] == ["edge_lo", "mid", "edge_hi", "new"]
    assert report == {"band": [0.25, 0.75], "problems": 8, "kept": 4, "unseen_kept": 1, "skipped": 4,
                      "skipped_below": 2, "skipped_above": 2}
    assert in_band(0.0, [0.0, 0.0]) and not in_band(1e-9, [0.0, 0.0])
    cfg = RoundConfig(pass_rate_filter=[0.0, 0.9])
    r1, r2 = tmp_path / "round-1", tmp_path / "round-2"
    assert apply_pass_rate_filter(cfg, 1, problems, r1, tmp_path / "round-0") == problems  # round 1: no filter
    assert not (r1 / FILTER_FILE).exists()
    with pytest.raises(SystemExit, match="solve_rates.json"):
        apply_pass_rate_filter(cfg, 2, problems, r2, r1)
    r1.mkdir()
    (r1 / "solve_rates.json").write_text(json.dumps(rates))
    assert [p["id"] for p in apply_pass_rate_filter(cfg, 2, problems, r2, r1)] == [
        "lo", "edge_lo", "mid", "edge_hi", "hi", "zero", "new"]
    assert json.loads((r2 / FILTER_FILE).read_text())["skipped_above"] == 1


@pytest.mark.parametrize("args,field", [
    (["--wave_n", "0"], "wave_n"), (["--wave_n", "8", "--max_n", "4"], "max_n"),
    (["--budget_tokens", "0"], "budget_tokens"), (["--budget_samples", "-1"], "budget_samples"),
    (["--rationalize_template", "{prompt} no gold"], "rationalize_template"),
    (["--rationalize_reserve", "1"], "rationalize_reserve"), (["--max_rationalized_share", "2"], "max_rationalized_share"),
    (["--pass_rate_filter", "0.9", "0.1"], "pass_rate_filter"), (["--pass_rate_filter", "0.5"], "pass_rate_filter"),
    (["--rationalize", "true", "--executor", "ray"], "executor ray"),
])
def test_budget_fields_are_validated_by_name(args, field):
    with pytest.raises(ValueError, match=field):
        parse_config(args)


def test_the_fixed_budget_leaves_the_fingerprint_as_before_the_budget_fields():
    fixed = json.loads(config_fingerprint(RoundConfig(sampling_budget="fixed", wave_n=4, budget_tokens=None)))
    assert not {"sampling_budget", "rationalize", "pass_rate_filter", "wave_n", "budget_tokens"} & set(fixed)
    default = json.loads(config_fingerprint(RoundConfig()))  # the adaptive default is a different run
    assert (default["sampling_budget"], default["wave_n"], default["budget_tokens"]) == ("adaptive", 2, 712_000)
    assert RoundConfig().rationalize_template == DEFAULT_HINT_TEMPLATE


@pytest.mark.slow
@pytest.mark.vllm
def test_an_adaptive_rationalizing_round_end_to_end(tiny_model, problem_files, tmp_path):
    from sdp.jsonl import read_jsonl
    from sdp.round import main
    from tests.conftest import round_args

    args = round_args(tiny_model, problem_files, tmp_path, "adaptive", "--sampling_budget", "adaptive",
                      "--wave_n", "2", "--max_n", "6", "--rationalize", "true", "--shard_size", "4",
                      "--max_per_problem", "2")
    main(args)
    rdir = tmp_path / "adaptive" / "round-1"
    metrics = json.loads((rdir / "metrics.json").read_text())
    manifest = json.loads((tmp_path / "adaptive" / "manifest.json").read_text())
    sampling, hinted = metrics["sampling"], metrics["rationalized"]
    assert sampling["samples"] <= 4 * 14 and sampling["waves"] >= 2  # budget: sampling.n x 14 problems
    assert sampling["samples_per_problem"]["max"] <= 6
    assert hinted["problems_hinted"] >= 1  # the random model solves no math problem: they are hinted
    assert manifest["round-1/verify"]["verified_by"] == "sampler"
    samples = [r for p in sorted((rdir / "samples").glob("*.jsonl")) for r in read_jsonl(p)]
    assert metrics["samples"] == len(samples) == sampling["samples"]
    hinted_ids = {r["id"] for r in samples if r.get("rationalized")}
    assert hinted_ids and hinted_ids <= {f"m-{i}" for i in range(4)}  # only gold-answer problems
    keys = [(r["id"], r["sample_index"]) for r in samples]
    assert len(keys) == len(set(keys)) and all("wave" in r for r in samples)
    assert all("Hint" not in r["prompt"] for r in read_jsonl(rdir / "sft.jsonl"))
