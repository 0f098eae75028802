"""`python -m sdp.verify` and the library functions behind it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from sdp.stages.verify import RecordError, summarize, verify_records
from sdp.verify import iter_records
from verifiers import UnknownVerifierError, Verdict

REPO = Path(__file__).resolve().parent.parent
CRASHY = "tests.test_verify_cli:CrashyVerifier"
KILLER = "tests.test_verify_cli:KillerVerifier"
NASTY = "tests.test_verify_cli:NastyVerifier"


def read_records(path: Path, **kwargs: Any) -> tuple[list[dict], list[dict]]:
    bad: list[dict] = []
    return [record for record, _ in iter_records(path, bad=bad, **kwargs)], bad


class CrashyVerifier:
    """Raises on problems marked `boom`; judges `ok` otherwise."""

    name = "crashy"

    def verify(self, problem: Mapping[str, Any], completion: str) -> Verdict:
        if problem.get("boom"):
            raise RuntimeError(f"boom on {problem['id']}")
        return Verdict(bool(problem.get("ok")), "as told")


class NastyVerifier:
    """What a sandboxed program can make a verifier return: text with a lone surrogate and control bytes,
    a raise, or a value that is not a verdict."""

    name = "nasty"

    def verify(self, problem: Mapping[str, Any], completion: str) -> Any:
        kind = problem.get("kind")
        if kind == "raise":
            raise ValueError("bad \udc80 input")
        if kind == "surrogate":
            return Verdict(False, "ValueError: '\udc80' \x1b[31m\x85\x7f", answer="\ud800")
        if kind == "garbage":
            return {"ok": "yes"}
        return Verdict(True, "fine")


class KillerVerifier:
    """Kills its whole process on problems marked `die` (a segfaulting extension, say)."""

    name = "killer"

    def verify(self, problem: Mapping[str, Any], completion: str) -> Verdict:
        if problem.get("die"):
            os._exit(3)
        return Verdict(True, "survived")


def _math_records(n: int) -> list[dict]:
    # Gold i, completion right for even i and wrong for odd i; every 10th needs sympy.
    records = []
    for i in range(n):
        if i % 10 == 5:
            gold, answer = "\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt2}"
        else:
            gold, answer = str(i), str(i if i % 2 == 0 else i + 1)
        records.append({"id": f"r{i}", "domain": "math", "prompt": f"q{i}", "answer": gold,
                        "completion": f"Work... so the answer is $\\boxed{{{answer}}}$."})
    return records


def _expected(n: int) -> list[bool]:
    return [True if i % 10 == 5 else i % 2 == 0 for i in range(n)]


def _write(path: Path, records: list[dict], extra_lines: dict[int, str] | None = None) -> Path:
    lines = [json.dumps(r) for r in records]
    for index, text in sorted((extra_lines or {}).items()):
        lines.insert(index, text)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("workers", [1, 2])
def test_verify_records_keeps_order_and_records(workers: int):
    records = _math_records(150)
    results = verify_records(records, workers=workers, progress=False)
    assert [r["verdict"]["ok"] for r in results] == _expected(150)
    for record, result in zip(records, results):
        assert {k: v for k, v in result.items() if k != "verdict"} == record
        assert set(result["verdict"]) == {"ok", "reason", "answer"}
    assert "verdict" not in records[0]  # input records are not mutated
    assert summarize(results) == {"ok": 90, "wrong": 60, "unverifiable": 0, "total": 150}


def test_verifier_override_and_missing_domain():
    records = [{"id": "a", "answer": "3", "completion": "\\boxed{3}"},
               {"id": "b", "domain": "math", "completion": "\\boxed{3}"}]
    assert [r["verdict"]["ok"] for r in verify_records(records, verifier="math", progress=False)] == [True, None]
    plain = verify_records(records, progress=False)
    assert plain[0]["verdict"]["ok"] is None and "domain" in plain[0]["verdict"]["reason"]


def test_unknown_verifier_fails_fast():
    with pytest.raises(UnknownVerifierError, match="known verifiers: .*math"):
        verify_records([{"domain": "nope", "completion": "x"}], progress=False)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_crashing_verifier_costs_one_record(workers: int):
    records = [{"id": f"c{i}", "domain": CRASHY, "ok": i % 2 == 0, "boom": i == 70, "completion": ""}
               for i in range(100)]
    results = verify_records(records, workers=workers, progress=False)
    verdicts = [r["verdict"] for r in results]
    assert verdicts[70] == {"ok": None, "reason": "verifier error: RuntimeError: boom on c70", "answer": None}
    assert [v["ok"] for i, v in enumerate(verdicts) if i != 70] == [i % 2 == 0 for i in range(100) if i != 70]


def test_light_records_first_then_a_pool_for_the_rest_keeps_order():
    # math is light (verified in this process); the first plugin record starts the pool for the rest
    math = [{"id": f"m{i}", "domain": "math", "answer": str(i), "completion": f"\\boxed{{{i % 3}}}"} for i in range(10)]
    crashy = [{"id": f"c{i}", "domain": CRASHY, "ok": i % 2 == 0, "boom": i == 5, "completion": ""} for i in range(70)]
    results = verify_records(math + crashy + math, workers=2, progress=False)
    assert [r["id"] for r in results] == [r["id"] for r in math + crashy + math]
    oks = [r["verdict"]["ok"] for r in results]
    assert oks[:10] == oks[80:] == [i % 3 == i for i in range(10)]
    assert oks[10:80] == [None if i == 5 else i % 2 == 0 for i in range(70)]


def test_a_dying_worker_process_costs_one_record():
    records = [{"id": f"k{i}", "domain": KILLER, "die": i == 33, "completion": ""} for i in range(80)]
    results = verify_records(records, workers=2, progress=False)
    reasons = [r["verdict"]["reason"] for r in results]
    assert reasons[33] == "verifier crashed"
    assert results[33]["verdict"]["ok"] is None
    assert reasons[:33] + reasons[34:] == ["survived"] * 79


@pytest.mark.parametrize("workers", ["1", "2"])
def test_cli_keeps_every_record_around_nasty_verdicts(tmp_path: Path, workers: str):
    """Records whose verification raises, returns garbage or carries unencodable text, between good ones."""
    kinds = ["ok", "raise", "ok", "surrogate", "garbage", "ok"] * 12  # 72 records: the pool path too
    records = [{"id": f"n{i}", "domain": NASTY, "kind": kind, "completion": "c"} for i, kind in enumerate(kinds)]
    out = tmp_path / "out.jsonl"
    proc = _cli(str(_write(tmp_path / "in.jsonl", records)), "-o", str(out), "--workers", workers)
    assert proc.returncode == 0, proc.stderr
    raw = out.read_bytes()
    raw.decode("utf-8")  # strict: the file is valid UTF-8
    assert b"\x1b" not in raw and "\x85".encode() not in raw and b"\x7f" not in raw  # control bytes escaped
    written = [json.loads(line) for line in raw.decode().splitlines()]
    assert [r["id"] for r in written] == [r["id"] for r in records]
    by_kind = {kind: [r["verdict"] for r in written if r["kind"] == kind] for kind in set(kinds)}
    assert all(v == {"ok": True, "reason": "fine", "answer": None} for v in by_kind["ok"])
    assert all(v["ok"] is None and v["reason"] == "verifier error: ValueError: bad \udc80 input" for v in by_kind["raise"])
    # The surrogate and control characters read back exactly as the verifier wrote them.
    assert all(v == {"ok": False, "reason": "ValueError: '\udc80' \x1b[31m\x85\x7f", "answer": "\ud800"}
               for v in by_kind["surrogate"])
    assert all(v["ok"] is None and "verdict ok must be" in v["reason"] for v in by_kind["garbage"])
    assert "verified 72 records: 36 ok, 12 wrong, 24 unverifiable" in proc.stdout


def test_summarize_counts_all_three_kinds():
    records = [{"verdict": {"ok": True}}, {"verdict": {"ok": False}}, {"verdict": {"ok": None}}, {}]
    assert summarize(records) == {"ok": 1, "wrong": 1, "unverifiable": 2, "total": 4}


def test_read_records_names_file_line_and_field(tmp_path: Path):
    good = _math_records(3)
    path = _write(tmp_path / "in.jsonl", good, {2: '{"id": "bad", "completion": '})
    with pytest.raises(RecordError, match=rf"{path}:3: invalid JSON"):
        read_records(path)
    path = _write(tmp_path / "in2.jsonl", good + [{"id": "x", "domain": "math", "answer": "1"}])
    with pytest.raises(RecordError, match=rf"{path}:4: field 'completion'"):
        read_records(path)
    path = _write(tmp_path / "in3.jsonl", [{"id": "y", "completion": "x"}])
    with pytest.raises(RecordError, match=rf"{path}:1: field 'domain' is missing"):
        read_records(path)
    assert len(read_records(path, verifier="math")[0]) == 1
    path = _write(tmp_path / "in4.jsonl", [{"id": "z", "domain": "algebra", "completion": "x"}])
    with pytest.raises(RecordError, match=rf"{path}:1: field 'domain': unknown verifier 'algebra'"):
        read_records(path)
    records, bad = read_records(_write(tmp_path / "in5.jsonl", good, {1: "[1, 2]"}), skip_bad=True)
    assert records == good and [b["line"] for b in bad] == [2]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sdp.verify", *args], capture_output=True, text=True, cwd=REPO)


def test_cli_end_to_end(tmp_path: Path):
    records = _math_records(70) + [{"id": "nogold", "domain": "math", "prompt": "?", "completion": "\\boxed{1}"}]
    src = _write(tmp_path / "samples.jsonl", records)
    out = tmp_path / "verified.jsonl"
    proc = _cli(str(src), "-o", str(out), "--workers", "2", "--timeout", "2")
    assert proc.returncode == 0, proc.stderr
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in written] == [r["id"] for r in records]
    assert [r["verdict"]["ok"] for r in written] == _expected(70) + [None]
    assert written[0] == {**records[0], "verdict": {"ok": True, "reason": "equivalent", "answer": "0"}}
    assert "verified 71 records: 42 ok, 28 wrong, 1 unverifiable" in proc.stdout
    assert "verify: 100%" in proc.stderr  # the progress bar


def test_cli_malformed_line_stops_with_file_and_line(tmp_path: Path):
    src = _write(tmp_path / "samples.jsonl", _math_records(4), {3: "not json"})
    proc = _cli(str(src), "-o", str(tmp_path / "out.jsonl"))
    assert proc.returncode == 2
    assert f"{src}:4: invalid JSON" in proc.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_cli_skip_bad_records_and_skips(tmp_path: Path):
    src = _write(tmp_path / "samples.jsonl", _math_records(4), {1: "not json", 3: '{"id": "nocomp"}'})
    out = tmp_path / "out.jsonl"
    proc = _cli(str(src), "-o", str(out), "--skip-bad", "--progress", "false")
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["r0", "r1", "r2", "r3"]
    bad = [json.loads(line) for line in (tmp_path / "out.bad.jsonl").read_text().splitlines()]
    assert [(b["line"], b["text"]) for b in bad] == [(2, "not json"), (4, '{"id": "nocomp"}')]
    assert "2 malformed lines skipped" in proc.stdout


def test_cli_unknown_verifier(tmp_path: Path):
    src = _write(tmp_path / "samples.jsonl", _math_records(1))
    proc = _cli(str(src), "--verifier", "nope")
    assert proc.returncode != 0
    assert "unknown verifier 'nope'; known verifiers:" in proc.stderr


def test_code_verifier_through_verify_records():
    pytest.importorskip("verifiers.code_verifier")
    good = "```python\ndef add(a, b):\n    return a + b\n```"
    bad = "```python\ndef add(a, b):\n    return a - b\n```"
    records = [{"id": f"c{i}", "domain": "code", "prompt": "add", "entry_point": "add",
                "tests": "assert add(2, 3) == 5\nassert add(-1, 1) == 0\n",
                "completion": good if i % 2 == 0 else bad} for i in range(4)]
    results = verify_records(records, workers=1, timeout=10.0, progress=False)
    assert [r["verdict"]["ok"] for r in results] == [True, False, True, False]


def test_cli_compare_with_math_verify(tmp_path: Path):
    pytest.importorskip("math_verify")
    src = _write(tmp_path / "samples.jsonl", _math_records(6))
    proc = _cli(str(src), "-o", str(tmp_path / "out.jsonl"), "--compare", "math-verify", "--progress", "false")
    assert proc.returncode == 0, proc.stderr
    assert "among 6 math records compared" in proc.stdout
    assert _cli(str(src), "--compare", "nope").returncode != 0


def test_cli_joins_a_samples_shard_with_its_problems(tmp_path: Path):
    full = _math_records(4)
    problems = _write(tmp_path / "problems.jsonl", [{k: v for k, v in r.items() if k != "completion"} for r in full])
    samples = _write(tmp_path / "samples.jsonl", [{"id": r["id"], "domain": "math", "completion": r["completion"]}
                                                  for r in full] + [{"id": "ghost", "domain": "math", "completion": "1"}])
    out = tmp_path / "out.jsonl"
    proc = _cli(str(samples), "-o", str(out), "--problems", str(problems))
    assert proc.returncode == 2 and f"{samples}:5: field 'id': 'ghost' is not in the --problems file" in proc.stderr
    assert not out.exists()
    proc = _cli(str(samples), "-o", str(out), "--problems", str(problems), "--skip-bad")
    assert proc.returncode == 0, proc.stderr
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["verdict"]["ok"] for r in written] == _expected(4)
    assert all("answer" not in r for r in written)  # the joined problem fields are not written out


def test_cli_math_verify_options_reach_the_verdicts_and_a_typo_fails_at_start(tmp_path: Path):
    lucky = [{"id": "s", "domain": "math", "answer": "4", "completion": "2 + 2 = 5, so \\boxed{4}"}]
    src, out = _write(tmp_path / "in.jsonl", lucky), tmp_path / "out.jsonl"
    for options, ok in ((None, False), ("{step_check: off}", True)):
        proc = _cli(str(src), "-o", str(out), "--progress", "false", *(["--math_verify", options] if options else []))
        assert proc.returncode == 0, proc.stderr
        assert json.loads(out.read_text())["verdict"]["ok"] is ok
    out.unlink()
    proc = _cli(str(src), "-o", str(out), "--math_verify", "{step_chek: off}")
    assert proc.returncode == 2 and not out.exists()
    assert "--math_verify: math_verify.step_chek: not a field of verifiers.MathVerifyConfig" in proc.stderr
