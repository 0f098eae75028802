"""The data contract: good sources load, bad ones fail naming file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sdp.sources.problems import ProblemError, load_problems, subset

MATH = {"id": "a", "domain": "math", "prompt": "1+1?", "answer": "2"}
CODE = {"id": "c", "domain": "code", "prompt": "write f", "tests": "assert f(1) == 2", "entry_point": "f"}


def _write(path: Path, lines: list) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def test_loads_jsonl_in_order_and_converts_numeric_answers(tmp_path):
    f = _write(tmp_path / "p.jsonl", [MATH, CODE, {**MATH, "id": "b", "answer": 7}])
    problems = load_problems(str(f))
    assert [p["id"] for p in problems] == ["a", "c", "b"]
    assert problems[2]["answer"] == "7"


def test_loads_parquet_and_datasets_directory(tmp_path):
    import datasets

    ds = datasets.Dataset.from_list([{**MATH, "id": f"m{i}"} for i in range(3)])
    ds.to_parquet(str(tmp_path / "p.parquet"))
    assert [p["id"] for p in load_problems(str(tmp_path / "p.parquet"))] == ["m0", "m1", "m2"]
    folder = tmp_path / "ds"
    folder.mkdir()
    _write(folder / "test.jsonl", [{**MATH, "id": f"d{i}"} for i in range(2)])
    assert [p["id"] for p in load_problems(str(folder), split="test")] == ["d0", "d1"]


def test_dotted_path_domain_is_accepted(tmp_path):
    f = _write(tmp_path / "p.jsonl", [{"id": "x", "domain": "tests.plugins:NeedleVerifier", "prompt": "hi"}])
    assert load_problems(str(f))[0]["domain"] == "tests.plugins:NeedleVerifier"


# (lines of the file, expected line number, words the message must contain)
BAD = [
    ([MATH, "{not json"], 2, ["invalid JSON"]),
    ([{k: v for k, v in MATH.items() if k != "prompt"}], 1, ["missing field 'prompt'"]),
    ([{**MATH, "id": 3}], 1, ["'id'", "must be a string"]),
    ([{**MATH, "prompt": "  "}], 1, ["'prompt' is empty"]),
    ([{k: v for k, v in MATH.items() if k != "answer"}], 1, ["'answer'", "math"]),
    ([{k: v for k, v in CODE.items() if k != "tests"}], 1, ["'tests' or 'io'", "code"]),
    ([{**CODE, "io": [{"input": "1"}]}], 1, ["'io'[0]"]),
    ([{**CODE, "tests": ["assert 1"]}], 1, ["'tests'", "type list"]),
    ([MATH, {**MATH, "domain": "chemistry"}], 2, ["unknown domain 'chemistry'", "math"]),
    ([MATH, {**MATH, "domain": "nosuch.module:Thing"}], 2, ["unknown domain"]),
    ([MATH, CODE, {**MATH}], 3, ["duplicate id 'a'", "p.jsonl:1"]),
    (["[1, 2]"], 1, ["must be a JSON object"]),
]


@pytest.mark.parametrize(("lines", "line", "words"), BAD)
def test_bad_problem_files_name_file_line_and_field(tmp_path, lines, line, words):
    f = _write(tmp_path / "p.jsonl", lines)
    with pytest.raises(ProblemError) as err:
        load_problems(str(f))
    message = str(err.value)
    assert f"{f}:{line}" in message
    for word in words:
        assert word in message


def test_duplicate_ids_across_files_and_empty_sets(tmp_path):
    a = _write(tmp_path / "a.jsonl", [MATH])
    b = _write(tmp_path / "b.jsonl", [CODE, MATH])
    with pytest.raises(ProblemError, match=r"b\.jsonl:2.*duplicate id 'a'.*a\.jsonl:1"):
        load_problems([str(a), str(b)])
    empty = _write(tmp_path / "empty.jsonl", ["", "   "])
    with pytest.raises(ProblemError, match="empty"):
        load_problems(str(empty))
    with pytest.raises(ProblemError, match="no such problem file"):
        load_problems(str(tmp_path / "missing.jsonl"))


def test_subset_is_seeded_ordered_and_complete_when_large():
    problems = [{**MATH, "id": str(i)} for i in range(20)]
    a, b = subset(problems, 5, seed=1), subset(problems, 5, seed=1)
    assert a == b and len(a) == 5
    assert [int(p["id"]) for p in a] == sorted(int(p["id"]) for p in a)
    assert subset(problems, 5, seed=2) != a
    assert subset(problems, None, seed=0) == problems == subset(problems, 99, seed=0)


def test_round_cli_reports_bad_problem_file(tmp_path):
    from sdp.round import main

    bad = _write(tmp_path / "train.jsonl", [MATH, {**MATH, "id": "z", "domain": "chemistry"}])
    with pytest.raises(SystemExit, match=r"train\.jsonl:2.*unknown domain"):
        main(
            [
                "--train_problems",
                str(bad),
                "--eval_problems",
                str(bad),
                "--output_dir",
                str(tmp_path / "runs"),
            ]
        )
    assert not (tmp_path / "runs" / "default" / "manifest.json").exists()


def test_round_cli_reports_missing_model_directory(tmp_path):
    from sdp.round import main

    good = _write(tmp_path / "train.jsonl", [MATH])
    held_out = _write(tmp_path / "eval.jsonl", [{**MATH, "id": "e"}])
    missing = tmp_path / "no-model"
    with pytest.raises(SystemExit, match="no-model: no such model directory"):
        main(["--model", str(missing), "--train_problems", str(good), "--eval_problems", str(held_out)])
    with pytest.raises(SystemExit, match="held-out problems also in the training set"):
        main(["--train_problems", str(good), "--eval_problems", str(good)])


def test_gzipped_jsonl_and_yaml_text_sources(tmp_path):
    import gzip

    gz = tmp_path / "p.jsonl.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as fh:
        fh.write(json.dumps(MATH) + "\n")
    assert load_problems(str(gz))[0]["id"] == "a"
    # What a command-line flag passes: mappings (or a list of them) as YAML text, beside plain paths.
    plain = _write(tmp_path / "c.jsonl", [CODE])
    problems = load_problems([f"{{path: {gz}}}", f"[{{path: {plain}, id_prefix: 'x-'}}]"])
    assert [p["id"] for p in problems] == ["a", "x-c"]
    with pytest.raises(ProblemError, match="not a YAML mapping"):
        load_problems(["{path: [unclosed"])
