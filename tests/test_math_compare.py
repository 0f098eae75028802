"""The second opinion (``verifiers.compare``): rows where sdp's math verifier and math-verify disagree."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytest.importorskip("math_verify")

from verifiers.compare import compare_records, format_disagreements, main  # noqa: E402

# (id, gold, completion, sdp passes, math-verify passes): known disagreements, and agreements.
RECORDS = [
    ("hedge", "12", "So it is $\\boxed{12 \\text{ (or 13)}}$.", False, True),
    ("exact", "\\frac{1}{3}", "The probability is $\\boxed{0.3333333333}$.", False, True),
    ("later", "15", "So the answer is 12.\n\nWait: 12 + 3 = 15 once Tuesday counts.\n#### 15", True, False),
    ("styled", "366", "The final answer is $\\boxed{\\textcolor{blue}{366}}$", True, False),
    ("agree-right", "4", "3-1=2. 2+2=4. \\boxed{4}", True, True),
    ("agree-wrong", "4", "3-1=2. 2+2=5. \\boxed{5}", False, False),
]
DISAGREE = {r[0] for r in RECORDS if r[3] != r[4]}


def _records() -> list[dict]:
    return [{"id": i, "domain": "math", "answer": g, "completion": c} for i, g, c, _, _ in RECORDS]


def test_rows_are_exactly_the_disagreements():
    rows = list(compare_records(_records(), timeout=1.0))
    assert {r["id"] for r in rows} == DISAGREE
    expected = {r[0]: r for r in RECORDS}
    for row in rows:
        _, gold, _, ours, theirs = expected[row["id"]]
        assert row["gold"] == gold
        assert (row["ours_ok"] is True) is ours and row["math_verify_ok"] is theirs
        assert isinstance(row["ours_reason"], str) and row["ours_reason"]
    by_id = {r["id"]: r for r in rows}
    assert by_id["hedge"]["ours_reason"].startswith("several answers")
    assert by_id["later"]["ours_answer"] == "15" and by_id["later"]["math_verify_answer"] == "12"


def test_other_domains_and_records_without_gold_are_skipped():
    records = _records() + [
        {"id": "c", "domain": "code", "completion": "def f(): pass"},
        {"id": "no-gold", "domain": "math", "completion": "\\boxed{3}"},
    ]
    rows = compare_records(records, timeout=1.0)
    assert {r["id"] for r in rows} == DISAGREE
    assert (rows.compared, rows.skipped) == (len(RECORDS), 2)


def test_format_names_both_verdicts_and_counts():
    text = format_disagreements(compare_records(_records(), timeout=1.0))
    lines = text.splitlines()
    assert lines[-1].startswith(f"{len(DISAGREE)} disagreements among {len(RECORDS)} math records compared")
    assert "sdp passes and math-verify fails 2, math-verify passes and sdp does not 2" in lines[-1]
    block = text[text.index("hedge:") :]
    assert "sdp math    fail (several answers" in block and "math-verify pass" in block
    # any iterable of rows works (no counts then)
    assert format_disagreements([]) == (
        "0 disagreements: sdp passes and math-verify fails 0, math-verify passes and sdp does not 0"
    )


def test_refuses_to_run_off_the_main_thread():
    errors: list[BaseException] = []

    def run() -> None:
        try:
            compare_records(_records(), timeout=1.0)
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    assert len(errors) == 1 and "main thread" in str(errors[0])


def test_command_prints_disagreements(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    src = tmp_path / "records.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in _records()))
    assert main([str(src), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {r["id"] for r in rows} == DISAGREE


def test_command_names_file_line_and_field_of_bad_input(tmp_path: Path):
    src = tmp_path / "bad.jsonl"
    src.write_text(json.dumps(_records()[0]) + "\n" + json.dumps({"id": "x", "domain": "math", "answer": "3"}) + "\n")
    proc = subprocess.run(
        [sys.executable, "-m", "verifiers.compare", str(src)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2
    assert f"{src}:2: field 'completion' is missing" in proc.stderr
