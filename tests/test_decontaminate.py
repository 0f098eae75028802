"""Decontamination: a planted near-duplicate is caught in every mode; the bundled sets' overlaps are templated."""

from __future__ import annotations

import pytest

from sdp.sources.decontaminate import (
    ContaminationError,
    Decontaminator,
    decontaminate,
    main,
    ngrams,
    normalize,
)
from sdp.sources.problems import load_problems

HELDOUT = [
    {"id": "h1", "prompt": "Let $f(x) = 3x^2 - 5$. A circle of radius 4 is centred at the vertex of the parabola; "
                           "how many lattice points lie strictly inside the circle but above the parabola?"},
    {"id": "h2", "prompt": "What is 2 + 2?"},
    {"id": "h3", "prompt": "A train leaves the station at noon travelling at sixty miles per hour toward a city."},
]  # fmt: skip
CLEAN = [
    {"id": "t1", "prompt": "Compute the sum of the first ten positive odd integers and explain each step."},
    {"id": "t2", "prompt": "What is 3 + 5?"},
]
# h1 rewritten: other case, punctuation and spacing, and its last words changed.
PLANTED = {"id": "t-leak", "prompt": "let F(x)=3x^2-5. A CIRCLE of radius 4 is centred at the vertex of the "
                                     "parabola -- how many lattice points lie strictly inside the circle? Explain."}  # fmt: skip


def test_normalisation_and_ngrams():
    assert normalize("Let F(x)=3x^2-5.  A CIRCLE!") == ["let", "f", "x", "3x", "2", "5", "a", "circle"]
    assert list(ngrams("What is 2 + 2?", 8)) == ["what is 2 2"]  # short prompts: one n-gram of their own
    assert len(list(ngrams(" ".join(f"w{i}" for i in range(10)), 8))) == 3


@pytest.mark.parametrize("mode", ["warn", "drop", "error"])
def test_planted_near_duplicate_is_caught(mode):
    train = [*CLEAN, PLANTED, {"id": "t-short", "prompt": "what is 2+2"}]
    if mode == "error":
        with pytest.raises(ContaminationError) as err:
            decontaminate(train, HELDOUT, mode=mode)
        assert "t-leak ~ h1" in str(err.value) and "t-short ~ h2" in str(err.value)
        assert err.value.report.contaminated == 2
        return
    kept, report = decontaminate(iter(train), HELDOUT, mode=mode)  # train is streamed
    assert (report.checked, report.contaminated, report.heldout) == (4, 2, 3)
    assert [(m.train_id, m.heldout_id) for m in report.examples] == [("t-leak", "h1"), ("t-short", "h2")]
    assert 0.5 < report.examples[0].overlap < 1.0
    assert [p["id"] for p in kept] == (["t1", "t2"] if mode == "drop" else ["t1", "t2", "t-leak", "t-short"])
    assert report.dropped == (2 if mode == "drop" else 0)
    assert report.to_dict()["examples"][0]["train_id"] == "t-leak"


def test_min_overlap_separates_a_rewrite_from_a_shared_phrase():
    phrase = {"id": "t-phrase", "prompt": "Describe a train leaves the station at noon travelling at sixty "
                                          "kilometres, then list three unrelated facts about owls and bats."}  # fmt: skip
    _, any_gram = decontaminate([phrase, PLANTED], HELDOUT, mode="warn")
    _, strict = decontaminate([phrase, PLANTED], HELDOUT, mode="warn", min_overlap=0.5)
    assert [m.train_id for m in any_gram.examples] == ["t-phrase", "t-leak"]
    assert [m.train_id for m in strict.examples] == ["t-leak"]


def test_one_index_serves_many_checks():
    index = Decontaminator(HELDOUT, n=8)
    assert index.heldout_count == 3 and index.check(CLEAN[0]) is None and index.check(PLANTED).heldout_id == "h1"
    kept, report = decontaminate(CLEAN, index, mode="error")  # clean: no error
    assert len(kept) == 2 and report.contaminated == 0


def test_bad_options():
    with pytest.raises(ValueError, match="mode"):
        decontaminate(CLEAN, HELDOUT, mode="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="min_overlap"):
        Decontaminator(HELDOUT, min_overlap=2.0)


@pytest.mark.parametrize("domain", ["math", "code"])
def test_bundled_sets_have_no_duplicate_prompts(domain, capsys):
    """The bundled held-out prompts are not in the training sets; their shared 8-grams are template phrasing."""
    train = load_problems(f"data/{domain}_train.jsonl")
    heldout = load_problems(f"data/{domain}_eval.jsonl")
    _, strict = decontaminate(train, heldout, min_overlap=1.0, log=False)
    assert strict.contaminated == 0
    _, loose = decontaminate(train, heldout, log=False)
    # Any-8-gram matching flags templated problems (see docs/data.md); none is a full copy.
    assert all(m.overlap < 1.0 for m in loose.examples)
    assert main([f"data/{domain}_train.jsonl", "--heldout", f"data/{domain}_eval.jsonl", "--min-overlap", "1"]) == 0
    assert capsys.readouterr().out.startswith(f"decontamination (8-grams, overlap >= 1, mode warn): 0 of {len(train)}")
