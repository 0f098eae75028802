"""The math verifier's policy options (``MathVerifyConfig``): each default and its opposite."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from verifiers import get_verifier
from verifiers._math_extract import extract_answer, last_sentence_answer
from verifiers.math_verifier import HEDGE, MathVerifier, MathVerifyConfig

# (option changed from its default, gold, completion, verdict with the default, verdict with the change)
POLICY = [
    ({"last_sentence": False}, "15", "She had 20 and gave away 5. So she has 15 stickers.", True, False),
    ({"last_sentence": False}, "45", "A side is $3^2 = \\boxed{9}$, so the total is 9 \\cdot 5 = 45.", True, False),
    ({"last_sentence": False}, "9", "A side is $3^2 = \\boxed{9}$, so the total is 9 \\cdot 5 = 45.", False, True),
    ({"last_sentence": False}, "15", "**Answer:** 15", True, True),  # a marker is not the last-sentence rule
    ({"exact_rationals": False}, "3000000", "\\boxed{3000000.5}", False, True),
    ({"exact_rationals": False}, "\\frac{1}{3}", "\\boxed{0.3333333333}", False, True),
    ({"exact_rationals": False}, "\\frac{1}{3}", "\\boxed{0.333}", False, False),  # beyond rel_tol either way
    ({"exact_rationals": False}, "\\frac{5}{2}", "\\boxed{2.5}", True, True),
    ({"round_irrational": False}, "3.14", "\\boxed{\\pi}", True, False),
    ({"round_irrational": False}, "1.41", "\\boxed{\\sqrt{2}}", True, False),
    ({"round_irrational": False}, "0.5", "\\boxed{\\frac{1}{2}}", True, True),  # exact, not rounded
    ({"round_decimal_answers": True}, "3.14", "\\boxed{3.1416}", False, True),
    ({"round_decimal_answers": True}, "12.5", "\\boxed{12.49}", False, True),
    ({"round_decimal_answers": True}, "12.5", "\\boxed{12.44}", False, False),
    ({"round_decimal_answers": True}, "12", "\\boxed{12.4}", False, False),  # an integer gold stays exact
    ({"round_decimal_answers": True}, "3.14", "\\boxed{\\frac{157}{50}}", True, True),
    ({"rel_tol": 1e-2}, "\\pi", "\\boxed{3.14}", False, True),
    ({"rel_tol": 1e-2}, "\\frac{1}{3}", "\\boxed{0.333}", False, False),  # rational golds stay exact
]


@pytest.fixture(scope="module")
def verifiers_by_option():
    made: dict[tuple, MathVerifier] = {}

    def get(change: dict) -> MathVerifier:
        key = tuple(sorted(change.items()))
        if key not in made:
            made[key] = MathVerifier(config=MathVerifyConfig(**change))
        return made[key]

    yield get
    for v in made.values():
        v.close()


@pytest.mark.parametrize("change, gold, completion, default, changed", POLICY)
def test_policy_option(verifiers_by_option, change, gold, completion, default, changed):
    assert verifiers_by_option({}).verify({"answer": gold}, completion).ok is default
    assert verifiers_by_option(change).verify({"answer": gold}, completion).ok is changed


def test_defaults_are_the_strict_choices():
    cfg = MathVerifyConfig()
    assert (cfg.last_sentence, cfg.exact_rationals, cfg.round_irrational, cfg.round_decimal_answers, cfg.rel_tol) == (
        True, True, True, False, 1e-6
    )
    for f in dataclasses.fields(MathVerifyConfig):
        assert f.metadata["help"], f.name
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.last_sentence = False  # type: ignore[misc]


@pytest.mark.parametrize(
    "options, error, text",
    [
        ({"last_sentence": "yes"}, TypeError, "last_sentence must be true or false"),
        ({"rel_tol": 0.5}, ValueError, "rel_tol must be in [0, 0.1)"),
        ({"rel_tol": float("nan")}, ValueError, "rel_tol must be in"),
        ({"rel_tol": "1e-6"}, TypeError, "rel_tol must be a number"),
        ({"hedges": False}, ValueError, "unknown math verifier option(s) ['hedges']"),
    ],
)
def test_bad_options_are_named(options, error, text):
    with pytest.raises(error, match=None) as info:
        MathVerifyConfig.from_mapping(options)
    assert text in str(info.value)


def test_config_survives_pickling_and_the_registry_builds_the_default():
    v = MathVerifier(config=MathVerifyConfig(last_sentence=False), rel_tol=1e-3)
    copy = pickle.loads(pickle.dumps(v))
    try:
        assert copy.config == MathVerifyConfig(last_sentence=False, rel_tol=1e-3)
        assert copy.verify({"answer": "15"}, "So she has 15 stickers.").ok is False
    finally:
        copy.close()
        v.close()
    built = get_verifier("math", timeout=2.0)
    assert isinstance(built, MathVerifier) and built.config == MathVerifyConfig() and built.timeout == 2.0
    with pytest.raises(TypeError, match="MathVerifyConfig"):
        MathVerifier(config={"last_sentence": False})  # type: ignore[arg-type]


def test_the_verifier_leaves_truncation_to_the_verify_stage():
    # One rule for cut completions sits above every verifier (sdp.stages.verify, keep_truncated):
    # the math verifier itself reads a kept cut completion like any other.
    v = MathVerifier()
    try:
        record = {"answer": "4", "finish_reason": "length"}
        assert v.verify(record, "3-1=2. 2+2=4").ok is v.verify({"answer": "4"}, "3-1=2. 2+2=4").ok is True
    finally:
        v.close()


@pytest.mark.parametrize(
    "text, need_cue, answer",
    [
        ("So he has 15 marbles.", False, "15"),
        ("It costs $15 in total.", False, "15"),
        ("The profit is 200,000 - 130,000 = 70,000.", False, "70,000"),
        ("He has 15 marbles, not 16.", False, "15"),
        ("That is 25% of the class.", False, "25%"),
        ("He bought 3 packs of 5.", False, None),
        ("The total is 3 * 5", False, None),
        ("Then 7 +", False, None),
        ("no digits at all", False, None),
        ("He has 15 marbles.", True, None),
        ("So he has 15 marbles.", True, "15"),
        ("So he has 15 marbles.\nThanks for reading!", False, "15"),
        # Real endings of the default's round-1 candidates, once accepted through this rule:
        ("17-7=boxed{7}", False, None),  # a box begun without its backslash: a failed statement
        ("4-1=3. 3+2=5. \\boxed", False, None),  # a box never filled
        ("9-3=6. 6-3=3. 3-2=1{3=1}", False, None),  # debris after the number
        ("Put the answer in \\boxed{}. 3+4=7. So it is 7.", False, "7"),  # an earlier echoed box
    ],
)
def test_last_sentence_table(text: str, need_cue: bool, answer: str | None):
    assert last_sentence_answer(text, need_cue=need_cue) == answer


@pytest.mark.parametrize(
    "completion, plain, answer",
    [
        ("So he has 15 marbles.", True, "15"),
        ("So he has 15 marbles.", False, None),
        ("A side is $3^2 = \\boxed{9}$, so the total is 9 \\cdot 5 = 45.", True, "45"),
        ("A side is $3^2 = \\boxed{9}$, so the total is 9 \\cdot 5 = 45.", False, "9"),
        ("There are $5! = \\boxed{120}$ orderings.", True, "120"),  # nothing concludes after it
        ("So the answer is \\boxed{7", True, None),  # cut off inside the box
    ],
)
def test_plain_extraction(completion: str, plain: bool, answer: str | None):
    assert extract_answer(completion, plain=plain) == answer


def test_hedge_reason_for_every_form():
    v = MathVerifier()
    try:
        for gold, completion in [
            ("12", "The answer is $12$ or $13$."),
            ("12", "\\boxed{12 \\text{ (or 13)}}"),
            ("12", "\\boxed{12}\n\\boxed{13}"),
            ("12", "\\boxed{12} or perhaps \\boxed{13}"),
            ("B", "The answer is (B) (or possibly (D))."),
            ("B", "\\boxed{B \\text{ or } C}"),
        ]:
            verdict = v.verify({"answer": gold}, completion)
            assert verdict.ok is False and verdict.reason == HEDGE, (completion, verdict)
    finally:
        v.close()
