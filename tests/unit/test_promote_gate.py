"""The promotion gate, a pure function: better, worse and mixed candidates, floors, the first model."""

from __future__ import annotations

import pytest

from digitops.config import PromoteParams
from digitops.promote import should_promote

POLICY = PromoteParams(
    registered_model="digits",
    metric="accuracy",
    min_improvement=0.0005,
    max_source_regression=0.002,
    floors={"overall": 0.98, "mnist": 0.98, "usps": 0.95},
    known_answers=16,
)


def metrics(mnist: float, usps: float, overall: float | None = None) -> dict:
    overall = (10_000 * mnist + 2_007 * usps) / 12_007 if overall is None else overall
    return {
        "mnist": {"accuracy": mnist, "macro_f1": mnist},
        "usps": {"accuracy": usps, "macro_f1": usps},
        "overall": {"accuracy": overall, "macro_f1": overall},
    }


CHAMPION = metrics(0.9950, 0.9750)


def test_a_better_candidate_is_promoted():
    decision = should_promote(metrics(0.9960, 0.9790), CHAMPION, POLICY)
    assert decision.promote
    assert all(reason.startswith("pass") for reason in decision.reasons)


def test_a_worse_candidate_is_not_promoted_and_the_reason_says_why():
    decision = should_promote(metrics(0.9940, 0.9700), CHAMPION, POLICY)
    assert not decision.promote
    assert any(reason.startswith("FAIL: overall accuracy") for reason in decision.reasons)


def test_better_overall_but_worse_on_one_source_is_not_promoted():
    candidate = metrics(0.9975, 0.9700)  # +0.25 points on MNIST, -0.5 points on USPS
    assert candidate["overall"]["accuracy"] - CHAMPION["overall"]["accuracy"] >= POLICY.min_improvement
    decision = should_promote(candidate, CHAMPION, POLICY)
    assert not decision.promote
    failures = [reason for reason in decision.reasons if reason.startswith("FAIL")]
    assert len(failures) == 1 and failures[0].startswith("FAIL: usps accuracy")


def test_an_equal_candidate_is_not_promoted_below_the_minimum_improvement():
    decision = should_promote(CHAMPION, CHAMPION, POLICY)
    assert not decision.promote


def test_a_small_regression_within_the_allowance_is_tolerated():
    candidate = metrics(0.9965, 0.9740)  # USPS -0.1 point, allowed is 0.2
    assert should_promote(candidate, CHAMPION, POLICY).promote


def test_the_first_model_is_promoted_when_it_meets_every_floor():
    decision = should_promote(metrics(0.99, 0.96), None, POLICY)
    assert decision.promote
    assert "no champion yet: the floors decide" in decision.reasons


@pytest.mark.parametrize(("mnist", "usps"), [(0.97, 0.97), (0.99, 0.94)])
def test_a_candidate_under_a_floor_is_never_promoted(mnist, usps):
    assert not should_promote(metrics(mnist, usps), None, POLICY).promote
    assert not should_promote(metrics(mnist, usps), metrics(0.5, 0.5), POLICY).promote


def test_a_floor_for_a_source_outside_the_mix_is_skipped_not_failed():
    policy = POLICY.model_copy(update={"floors": {"overall": 0.98, "emnist-digits": 0.99}})
    decision = should_promote(metrics(0.99, 0.97), None, policy)
    assert decision.promote
    assert any(reason.startswith("skip: floor for emnist-digits") for reason in decision.reasons)


def test_the_gate_compares_the_configured_metric():
    candidate = metrics(0.9960, 0.9790)
    candidate["overall"]["macro_f1"] = 0.5
    policy = POLICY.model_copy(update={"metric": "macro_f1", "floors": {}})
    assert should_promote(candidate, CHAMPION, POLICY).promote
    assert not should_promote(candidate, CHAMPION, policy).promote
