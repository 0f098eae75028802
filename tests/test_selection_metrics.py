"""Selection rules and evaluation metrics, table-driven against brute force."""

from __future__ import annotations

import itertools
from math import comb

import pytest

from sdp.stages.evaluate import eval_metrics, majority_correct, pass_at_k
from sdp.stages.select import dedupe_key, select


def rec(
    pid: str, completion: str, ok: bool | None, answer: str | None = None, i: int = 0, domain: str = "math"
) -> dict:
    return {
        "id": pid,
        "domain": domain,
        "prompt": "p",
        "completion": completion,
        "sample_index": i,
        "verdict": {"ok": ok, "reason": "", "answer": answer},
    }


@pytest.mark.parametrize(
    ("n", "c", "k"), [(4, 0, 1), (4, 1, 1), (4, 1, 4), (5, 2, 2), (10, 3, 4), (8, 8, 3), (6, 5, 2)]
)
def test_pass_at_k_matches_brute_force_over_subsets(n, c, k):
    outcomes = [1] * c + [0] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    brute = sum(any(outcomes[i] for i in s) for s in subsets) / len(subsets)
    assert pass_at_k(n, c, k) == pytest.approx(brute)
    assert pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k))


def test_pass_at_k_rejects_k_above_n():
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)


MAJ = [
    ([("7", True), ("7", True), ("8", False)], True),
    ([("8", False), ("8", False), ("7", True)], False),
    ([("8", False), ("7", True)], False),  # tie: the answer seen first wins
    ([("7", True), ("8", False)], True),
    ([(None, False), ("7", True)], True),  # samples without an answer do not vote
    ([(None, False), (None, False)], None),
]


@pytest.mark.parametrize(("votes", "expected"), MAJ)
def test_majority_vote(votes, expected):
    assert majority_correct([rec("p", "c", ok, a) for a, ok in votes]) is expected


def test_eval_metrics_per_domain_and_unverifiable_problems():
    records = (
        [rec("m1", "x", ok, "5" if ok else "4", i) for i, ok in enumerate([True, False, False, True])]
        + [rec("m2", "x", False, "1", i) for i in range(4)]
        + [rec("m3", "x", None, None, i) for i in range(4)]  # bad gold: left out
        + [rec("c1", "x", ok, None, i, domain="code") for i, ok in enumerate([True, True, False, None])]
    )
    scores = eval_metrics(records, k=2)
    assert scores["math"]["problems"] == 2 and scores["math"]["unverifiable_problems"] == 1
    assert scores["math"]["pass@1"] == pytest.approx((0.5 + 0) / 2)
    assert scores["math"]["pass@k"] == pytest.approx((pass_at_k(4, 2, 2) + 0) / 2)
    # maj@2 over the first two samples: m1 votes 5 (ok) vs 4 -> tie, first seen "5" wins; m2 wrong.
    assert scores["math"]["maj@k"] == pytest.approx(0.5)
    assert scores["code"]["maj@k"] is None and scores["code"]["pass@1"] == pytest.approx(0.5)
    assert scores["all"]["problems"] == 3 and scores["all"]["k"] == 2
    # The code problem has no answers to vote with: the total votes over math alone.
    assert scores["all"]["maj@k"] == pytest.approx(scores["math"]["maj@k"])


def test_select_keeps_verified_distinct_capped_and_records_solve_rates():
    records = [
        rec("a", "x = 1", True),
        rec("a", "  x  =\n1 ", True),
        rec("a", "x = 2", True),
        rec("a", "x = 3", True),
        rec("a", "bad", False),
        rec("a", "??", None),
        rec("b", "no", False),
        rec("b", "nope", False),
        rec("c", "y", True),
    ]
    chosen = select(records, max_per_problem=2)
    assert [(r["id"], r["completion"]) for r in chosen.kept] == [("a", "x = 1"), ("a", "x = 2"), ("c", "y")]
    assert chosen.counts["duplicates"] == 1 and chosen.counts["capped"] == 1
    assert chosen.counts["unverifiable"] == 1 and chosen.counts["wrong"] == 3 and chosen.counts["ok"] == 5
    assert chosen.solve_rates == {"a": pytest.approx(4 / 6), "b": 0.0, "c": 1.0}
    assert chosen.counts["problems_solved"] == 2
    assert chosen.train_pass_rate == pytest.approx((4 / 6 + 0 + 1) / 3)
    assert dedupe_key(" a \t b\n") == "a b"
    with pytest.raises(ValueError):
        select(records, max_per_problem=0)


def test_grouped_selector_matches_select_and_keeps_no_hashes_of_finished_problems():
    from sdp.stages.select import Selector

    records = [rec("a", f"x = {i % 3}", True) for i in range(6)] + [rec("b", "y", True), rec("b", " y ", True)]
    chosen = select(records, max_per_problem=2)
    grouped = Selector(2, grouped=True)
    kept = [r for r in records if grouped.add(r)]
    assert kept == chosen.kept and grouped.summary() == chosen.counts
    assert grouped.solve_rates == chosen.solve_rates
    assert set(grouped._seen) == {"b"}  # problem a's hashes were dropped when b started
    with pytest.raises(ValueError, match="samples of problem 'a' are not contiguous"):
        grouped.add(rec("a", "late", True))
