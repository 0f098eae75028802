"""`python -m sdp.inspect`: the same report from single-file and per-shard round directories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sdp.inspect import main, reason_histogram, render, round_traces
from verifiers.registry import get_verifier

PROBLEMS = [
    {"id": "m1", "domain": "math", "prompt": "What is 2 + 3?", "answer": "5"},
    {"id": "m2", "domain": "math", "prompt": "What is 4 * 4?", "answer": "16"},
    {"id": "m3", "domain": "math", "prompt": "What is 9 - 1?", "answer": "8"},
]
COMPLETIONS = {
    "m1": ["2 + 3 = 5. \\boxed{5}", "2 + 3 = 6. \\boxed{6}", "I am not sure."],
    "m2": ["4 * 4 = 16 so \\boxed{16}", "4*4 = 16, \\boxed{16}"],
    "m3": ["\\boxed{7}", "\\boxed{9}"],
}


def verified_records() -> list[dict]:
    """Records with real math-verifier verdicts."""
    math = get_verifier("math")
    records = []
    for p in PROBLEMS:
        for i, completion in enumerate(COMPLETIONS[p["id"]]):
            verdict = math.verify(p, completion).to_dict()
            records.append({**p, "completion": completion, "sample_index": i, "verdict": verdict})
    return records


def _jsonl(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def single_file_run(root: Path, records: list[dict]) -> Path:
    rdir = root / "round-1"
    _jsonl(rdir / "problems.jsonl", PROBLEMS)
    _jsonl(rdir / "verdicts.jsonl", records)
    _jsonl(rdir / "sft.jsonl", [{"id": "m1", "prompt": "What is 2 + 3?\n", "completion": records[0]["completion"]},
                                {"id": "m2", "prompt": "What is 4 * 4?\n", "completion": records[3]["completion"]}])  # fmt: skip
    _jsonl(rdir / "eval.jsonl", records[:2])
    return root


def sharded_run(root: Path, records: list[dict]) -> Path:
    """The per-shard layout: samples carry only id/domain, problems live in problems/ shards."""
    rdir = root / "round-1"
    lean = [{k: v for k, v in r.items() if k not in ("prompt", "answer")} for r in records]
    _jsonl(rdir / "problems" / "shard-00000.jsonl", PROBLEMS[:2])
    _jsonl(rdir / "problems" / "shard-00001.jsonl", PROBLEMS[2:])
    _jsonl(rdir / "verdicts" / "shard-00000.jsonl", lean[:5])
    _jsonl(rdir / "verdicts" / "shard-00001.jsonl", lean[5:])
    _jsonl(rdir / "verdicts" / ".shard-00002.jsonl.tmp-123", [{"broken": True}])  # a killed writer's leftover
    (rdir / "sft.jsonl").write_text((root.parent / "single" / "round-1" / "sft.jsonl").read_text())
    _jsonl(rdir / "eval" / "problems" / "shard-00000.jsonl", PROBLEMS[:1])
    _jsonl(rdir / "eval" / "verdicts" / "shard-00000.jsonl", lean[:2])
    return root


@pytest.fixture()
def runs(tmp_path):
    records = verified_records()
    return single_file_run(tmp_path / "single", records), sharded_run(tmp_path / "sharded", records)


def test_histogram_counts_real_verdict_reasons():
    hist = reason_histogram(verified_records())
    assert sum(hist.values()) == 7
    assert sum(n for (ok, _), n in hist.items() if ok is True) == 3
    assert sum(n for (ok, _), n in hist.items() if ok is False) == 4


def test_both_layouts_give_the_same_report(runs):
    single, sharded = runs
    assert round_traces(single, 1) == round_traces(sharded, 1)
    a = render(single, 1).split("\n", 1)[1]
    b = render(sharded, 1).split("\n", 1)[1]
    assert a == b
    assert render(single, 1, heldout=True).split("\n", 1)[1] == render(sharded, 1, heldout=True).split("\n", 1)[1]


def test_report_shows_prompt_kept_and_rejected_with_reasons(runs, capsys):
    single, _ = runs
    assert main([str(single), "--round", "1", "--problems", "2", "--samples", "3"]) == 0
    out = capsys.readouterr().out
    assert "7 samples of 3 problems" in out
    # m1 (one right, two wrong) and m2 (two right: one kept, one a distinct trace not kept) are shown, not m3.
    assert "=== m1 (math): 1/3 verified, gold '5'" in out and "=== m2" in out and "=== m3" not in out
    assert "What is 2 + 3?" in out
    assert "[KEPT] sample 0" in out and "[verified, not kept] sample 1" in out
    m1 = out.split("=== m1")[1].split("===")[0]
    assert m1.count("[rejected]") == 2 and "\\boxed{6}" in m1 and "answer '6'" in m1


def test_choose_by_id_and_reason_filter(runs, capsys):
    single, _ = runs
    assert main([str(single), "--round", "1", "--id", "m3"]) == 0
    out = capsys.readouterr().out
    assert "=== m3 (math): 0/2 verified" in out and "=== m1" not in out
    assert main([str(single), "--round", "1", "--reason", "no final answer found", "--samples", "5"]) == 0
    out = capsys.readouterr().out
    assert "=== m1" in out and "=== m2" not in out and "=== m3" not in out
    assert "no final answer found\n      I am not sure." in out and "\\boxed{6}" not in out
    assert main([str(single), "--round", "1", "--id", "nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_missing_round_is_a_clear_error(runs, capsys):
    single, _ = runs
    assert main([str(single), "--round", "4"]) == 2
    assert "round-4: no such round directory" in capsys.readouterr().err


def test_report_shows_the_rounds_luck_figures_or_how_to_measure_them(runs) -> None:
    single, _ = runs
    assert "luck: not measured (python -m sdp.stages.luck" in render(single, 1)
    luck = {"checked": 7, "shuffled_ok": 1, "shuffled_pass_rate": 1 / 7, "own_ok": 3, "own_pass_rate": 3 / 7,
            "same_gold": 0, "kept_checked": 2, "kept_false_step": 1, "distinct_answers_per_problem": 2.0}
    (single / "round-1" / "metrics.json").write_text(json.dumps({"round": 1, "luck": luck}))
    text = render(single, 1)
    assert "luck: shuffled golds pass 14.3% (1 of 7) vs own golds 42.9% (3)" in text
    assert "kept with a false step 1 of 2; 2.00 distinct answers per problem" in text
    assert "luck:" not in render(single, 1, heldout=True)


def test_report_shows_a_verdicts_flags(tmp_path) -> None:
    records = verified_records()
    records[0]["verdict"]["flags"] = ["false step: 2 + 3 = 6"]
    run = single_file_run(tmp_path / "flagged", records)
    assert "[flags: false step: 2 + 3 = 6]" in render(run, 1, ids=["m1"])
