"""The promotion gate, a pure function: better, worse and mixed candidates, floors, the first model, sources
without a floor, and the per-digit regression check with its support threshold."""

from __future__ import annotations

import numpy as np
import pytest

from digitops.config import PromoteParams
from digitops.promote import PromotionError, gate_metrics, should_promote

POLICY = PromoteParams(
    registered_model="digits",
    metric="accuracy",
    min_improvement=0.0005,
    max_source_regression=0.002,
    max_digit_regression=0.03,
    min_digit_support=100,
    floors={"overall": 0.98, "mnist": 0.98, "usps": 0.95},
    known_answers=16,
    parity_tolerance=1e-4,
)


def figures(accuracy: float, count: int, digits: dict[int, float] | None = None) -> dict:
    """One source's figures: `count` test digits, a tenth of them of each digit, each digit read right at
    `accuracy` unless `digits` says otherwise ({digit: accuracy}); the source's accuracy follows."""
    per_digit = {str(digit): {"accuracy": accuracy, "count": count // 10} for digit in range(10)}
    for digit, value in (digits or {}).items():
        per_digit[str(digit)]["accuracy"] = value
    accuracy = float(np.mean([entry["accuracy"] for entry in per_digit.values()]))
    return {"accuracy": accuracy, "macro_f1": accuracy, "count": count, "digits": per_digit}


def pooled(**sources: dict) -> dict:
    """Per-source figures and the "overall" they make together (digits pooled as well)."""
    total = sum(entry["count"] for entry in sources.values())
    accuracy = sum(entry["accuracy"] * entry["count"] for entry in sources.values()) / total
    overall = {"accuracy": accuracy, "macro_f1": accuracy, "count": total, "digits": {}}
    return {**sources, "overall": overall}


def metrics(mnist: float, usps: float, overall: float | None = None) -> dict:
    result = pooled(mnist=figures(mnist, 10_000), usps=figures(usps, 2_000))
    if overall is not None:
        result["overall"] = {**result["overall"], "accuracy": overall, "macro_f1": overall}
    return result


def failures(decision) -> list[str]:
    return [reason for reason in decision.reasons if reason.startswith("FAIL")]


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


def test_better_overall_but_worse_on_one_digit_of_a_source_is_not_promoted_and_named():
    """The continental 1: a candidate that gains on MNIST and on the drawings as a whole, but reads the
    drawings' 1s much worse, stays challenger, and the reason names the source and the digit."""
    champion = pooled(mnist=figures(0.9950, 10_000), drawings=figures(0.97, 1_000))
    candidate = pooled(mnist=figures(0.9970, 10_000), drawings=figures(0.98, 1_000, {1: 0.90}))
    assert candidate["drawings"]["accuracy"] > champion["drawings"]["accuracy"]
    assert candidate["overall"]["accuracy"] - champion["overall"]["accuracy"] >= POLICY.min_improvement
    decision = should_promote(candidate, champion, POLICY)
    assert not decision.promote
    assert failures(decision) == [
        "FAIL: drawings digit 1 accuracy 0.9000 vs champion 0.9700 (100 test digits): change -0.0700, "
        "largest drop allowed 0.0300"
    ]
    assert "pass: drawings digit(s) 0, 2, 3, 4, 5, 6, 7, 8, 9: none loses more than 0.0300 accuracy " in (
        "\n".join(decision.reasons)
    )


def test_a_digit_drop_within_the_allowance_is_tolerated():
    champion = pooled(mnist=figures(0.9950, 10_000), drawings=figures(0.97, 1_000))
    candidate = pooled(mnist=figures(0.9970, 10_000), drawings=figures(0.98, 1_000, {1: 0.95}))
    decision = should_promote(candidate, champion, POLICY)
    assert decision.promote, decision.reasons
    assert any("largest change: digit 1, -0.0200" in reason for reason in decision.reasons)


def test_a_source_without_a_floor_is_still_guarded_by_the_regression_limit():
    assert "drawings" not in POLICY.floors
    champion = pooled(mnist=figures(0.9950, 10_000), drawings=figures(0.970, 1_000))
    candidate = pooled(mnist=figures(0.9980, 10_000), drawings=figures(0.960, 1_000))  # -1 point
    decision = should_promote(candidate, champion, POLICY)
    assert not decision.promote
    assert failures(decision) == [
        "FAIL: drawings accuracy 0.9600 vs champion 0.9700: change -0.0100, largest drop allowed 0.0020"
    ]


@pytest.mark.parametrize(("support", "guarded"), [(99, False), (100, True)])
def test_the_per_digit_check_needs_min_digit_support_test_digits(support, guarded):
    """A digit with fewer test digits than min_digit_support is skipped (and said to be); at the threshold
    it is checked."""
    champion = pooled(mnist=figures(0.9950, 10_000), drawings=figures(0.97, 1_000))
    candidate = pooled(mnist=figures(0.9970, 10_000), drawings=figures(0.99, 1_000, {7: 0.90}))
    candidate["drawings"]["digits"]["7"]["count"] = champion["drawings"]["digits"]["7"]["count"] = support
    decision = should_promote(candidate, champion, POLICY)
    assert decision.promote is not guarded
    skipped = "skip: drawings digit(s) 7: under 100 test digits each, too few to compare"
    assert (skipped in decision.reasons) is not guarded
    assert any(reason.startswith("FAIL: drawings digit 7") for reason in decision.reasons) is guarded


def test_the_per_digit_check_applies_to_every_source_and_names_each_failure():
    champion = metrics(0.9950, 0.9750)
    candidate = pooled(
        mnist=figures(0.9995, 10_000, {9: 0.96}),  # its 9s lose 3.5 points
        usps=figures(0.9850, 2_000, {1: 0.94}),  # its 1s lose 3.5 points
    )
    assert candidate["mnist"]["accuracy"] > champion["mnist"]["accuracy"]
    assert candidate["usps"]["accuracy"] > champion["usps"]["accuracy"]
    reasons = failures(should_promote(candidate, champion, POLICY))
    assert [reason.split(" accuracy")[0] for reason in reasons] == [
        "FAIL: mnist digit 9",
        "FAIL: usps digit 1",
    ]


def test_a_source_or_digit_the_champion_was_not_measured_on_fails():
    champion = metrics(0.9950, 0.9750)
    candidate = pooled(
        mnist=figures(0.9970, 10_000), usps=figures(0.98, 2_000), drawings=figures(0.99, 1_000)
    )
    assert failures(should_promote(candidate, champion, POLICY)) == [
        "FAIL: drawings: the champion was not measured on it, so it cannot be compared"
    ]
    del champion["usps"]["digits"]["4"]
    candidate = metrics(0.9970, 0.98)
    assert failures(should_promote(candidate, champion, POLICY)) == [
        "FAIL: usps digit 4: the champion was not measured on it"
    ]
    del champion["usps"]["digits"]
    assert failures(should_promote(candidate, champion, POLICY)) == [
        "FAIL: usps: no per-digit figures for the champion, so its digits cannot be compared"
    ]


def test_a_floor_for_any_registry_source_applies_when_the_source_is_in_the_split():
    policy = POLICY.model_copy(update={"floors": {"overall": 0.9, "emnist-digits": 0.95}})
    candidate = pooled(mnist=figures(0.99, 10_000), **{"emnist-digits": figures(0.94, 1_000)})
    decision = should_promote(candidate, None, policy)
    assert not decision.promote
    assert failures(decision) == ["FAIL: emnist-digits accuracy 0.9400 vs floor 0.9500"]


def test_gate_metrics_takes_the_sources_of_the_test_split_and_overall_from_eval_json():
    evaluation = {
        **metrics(0.99, 0.98),
        "real_world": None,
        "robustness": {"clean": 0.99},
    }
    sources = np.array(["usps", "mnist", "usps"])
    assert list(gate_metrics(evaluation, sources)) == ["usps", "mnist", "overall"]
    with pytest.raises(PromotionError, match=r"no figures for \['drawings'\].*run evaluate again"):
        gate_metrics(evaluation, np.array(["mnist", "drawings"]))


def test_gate_metrics_leaves_contributed_sources_out_and_refuses_an_eval_json_that_counts_them():
    """Drawings are chosen by whoever contributes and put in test by a hash anyone can compute: eval.json
    reports them apart, and the gate sees neither them nor an "overall" that holds them."""
    evaluation = {
        **metrics(0.9960, 0.9790),  # better than CHAMPION
        "real_world": None,
        "contributed": {"drawings": figures(0.2, 500)},  # a manufactured regression, out of the gate's view
        "robustness": {"clean": 0.99},
    }
    sources = np.array(["mnist", "drawings", "usps"])
    gated = gate_metrics(evaluation, sources, contributed=("drawings",))
    assert list(gated) == ["mnist", "usps", "overall"]
    assert should_promote(gated, CHAMPION, POLICY).promote

    stale = {**pooled(mnist=figures(0.99, 10_000), drawings=figures(0.2, 500)), "contributed": None}
    with pytest.raises(
        PromotionError, match=r"counts the contributed source\(s\) \['drawings'\].*evaluate again"
    ):
        gate_metrics(stale, sources, contributed=("drawings",))
