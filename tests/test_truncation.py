"""A completion cut at the token limit is never a pass unless `keep_truncated` says so, whatever its verifier."""

from __future__ import annotations

import pytest

from sdp.config import RoundConfig
from sdp.stages.verify import TRUNCATED, Verification, verify_records

MATH = {"id": "m", "domain": "math", "answer": "4", "completion": "2 + 2 = 4, so the answer is \\boxed{4}."}
CODE = {"id": "c", "domain": "code", "tests": "assert f(1) == 2",
        "completion": "```python\ndef f(x):\n    return x + 1\n```"}  # fmt: skip
NEEDLE = {"id": "n", "domain": "tests.plugins:NeedleVerifier", "needle": "a", "completion": "a"}


@pytest.mark.parametrize("record", [MATH, CODE, NEEDLE], ids=["math", "code", "plugin"])
def test_a_cut_completion_fails_before_its_verifier_and_passes_when_kept(record):
    cut, done = {**record, "finish_reason": "length"}, {**record, "finish_reason": "stop"}
    verdicts = [r["verdict"] for r in verify_records([cut, done], workers=1, progress=False)]
    assert verdicts[0] == {"ok": False, "reason": TRUNCATED, "answer": None}
    assert verdicts[1]["ok"] is True
    kept = verify_records([cut], workers=1, progress=False, keep_truncated=True)
    assert kept[0]["verdict"]["ok"] is True


def test_the_round_config_carries_the_rule_to_every_stage():
    assert RoundConfig().keep_truncated is False
    with Verification.for_config(RoundConfig(keep_truncated=True, verify_workers=1)) as verification:
        [verdict] = verification.verdicts([{**MATH, "finish_reason": "length"}], in_process=True)
    assert verdict["ok"] is True
    with Verification.for_config(RoundConfig(verify_workers=1)) as verification:
        [verdict] = verification.verdicts([{**MATH, "finish_reason": "length"}], in_process=True)
    assert verdict["reason"] == TRUNCATED
