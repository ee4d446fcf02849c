"""Promotion against a real MLflow registry (sqlite store in a temporary folder) with real Keras models:
aliases move only when the gate passes and infra validation holds; otherwise the champion stays."""

from __future__ import annotations

import itertools

import keras
import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from digitops.config import PromoteParams
from digitops.evaluate import metrics_by_source
from digitops.infer.classifier import Classifier
from digitops.models import build_model
from digitops.promote import KnownAnswers, PromotionError, promote_candidate
from digitops.tracking import configure
from tests.fakes import random_digits

pytestmark = pytest.mark.slow  # a real registry: each promotion logs, registers and downloads a model

_names = (f"digits-{index}" for index in itertools.count())


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("registry")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        configure("promotion-tests", root)
        yield root
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def test_split() -> dict[str, np.ndarray]:
    images = random_digits(200, seed=1)
    labels = np.arange(200) % 10
    sources = np.where(np.arange(200) < 150, "mnist", "usps")
    return {"images": images, "labels": labels, "sources": sources}


@pytest.fixture(scope="module")
def weak_and_strong(test_split):
    """An untrained model (chance accuracy) and one fitted to the test digits (near 100%)."""
    keras.utils.set_random_seed(0)
    weak = build_model("seed004")
    strong = build_model("seed004")
    strong.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    strong.fit(test_split["images"], test_split["labels"], epochs=40, batch_size=50, verbose=0)
    return weak, strong


def _log(model: keras.Model) -> str:
    """Log `model` as the train stage does; returns the run id."""
    with mlflow.start_run() as run:
        mlflow.tensorflow.log_model(model, name="model", input_example=np.zeros((1, 28, 28), np.uint8))
    return run.info.run_id


def _probabilities(model: keras.Model, images: np.ndarray) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(images, training=False))


def _promote(model, test_split, policy, known_from=None):
    """Log `model` and put it through promotion, with the known answers of `known_from` (default: itself)."""
    metrics = metrics_by_source(
        _probabilities(model, test_split["images"]), test_split["labels"], test_split["sources"], 15
    )
    images = test_split["images"][:32]
    known = KnownAnswers(images, _probabilities(known_from or model, images))
    run_id = _log(model)
    return run_id, promote_candidate(run_id, metrics, known, test_split, policy, 15)


def _policy(**changes) -> PromoteParams:
    defaults = dict(
        registered_model=next(_names),
        metric="accuracy",
        min_improvement=0.01,
        max_source_regression=0.0,
        # Every digit of the fake split (15 or 5 per source) is checked; the fitted model reads each far
        # better than chance, so only the per-digit check's plumbing is exercised here.
        max_digit_regression=0.5,
        min_digit_support=1,
        floors={"overall": 0.0},
        known_answers=32,
    )
    return PromoteParams(**{**defaults, **changes})


def _alias(name: str, alias: str):
    return MlflowClient().get_model_version_by_alias(name, alias)


def test_the_first_candidate_becomes_champion_after_infra_validation(store, test_split, weak_and_strong):
    weak, _ = weak_and_strong
    policy = _policy()
    run_id, report = _promote(weak, test_split, policy)
    champion = _alias(policy.registered_model, "champion")
    assert report["promoted"] and report["champion"] == str(champion.version) == "1"
    assert champion.run_id == run_id
    assert champion.tags["validation_status"] == "passed" and champion.tags["decision"] == "champion"
    assert float(champion.tags["metric.overall.accuracy"]) == pytest.approx(
        report["candidate"]["metrics"]["overall"]["accuracy"]
    )
    assert report["infra_validation"] == {
        "passed": True,
        "digits": 32,
        "mismatched_digits": 0,
        "max_probability_difference": pytest.approx(0.0, abs=1e-5),
        "tolerance": 1e-4,
    }


def test_a_better_candidate_takes_the_alias(store, test_split, weak_and_strong):
    weak, strong = weak_and_strong
    policy = _policy()
    _promote(weak, test_split, policy)
    run_id, report = _promote(strong, test_split, policy)
    assert report["promoted"] and report["champion_before"]["version"] == "1"
    # The champion's re-evaluation carries per-digit figures, so every source's digits were compared.
    assert report["champion_before"]["metrics_on_this_test_split"]["usps"]["digits"]["1"]["count"] == 5
    assert sum(reason.startswith("pass: mnist digit(s) 0, 1, 2") for reason in report["reasons"]) == 1
    assert sum(reason.startswith("pass: usps digit(s) 0, 1, 2") for reason in report["reasons"]) == 1
    assert _alias(policy.registered_model, "champion").run_id == run_id


def test_a_worse_candidate_becomes_challenger_and_the_champion_stays(store, test_split, weak_and_strong):
    weak, strong = weak_and_strong
    policy = _policy()
    strong_run, _ = _promote(strong, test_split, policy)
    weak_run, report = _promote(weak, test_split, policy)
    assert not report["promoted"] and report["alias"] == "challenger"
    assert any(reason.startswith("FAIL: overall accuracy") for reason in report["reasons"])
    # The champion was re-evaluated on the same test digits the candidate was measured on.
    assert report["champion_before"]["metrics_on_this_test_split"]["overall"]["accuracy"] > 0.9
    assert _alias(policy.registered_model, "champion").run_id == strong_run
    assert _alias(policy.registered_model, "challenger").run_id == weak_run


def test_failing_infra_validation_leaves_the_champion_untouched(store, test_split, weak_and_strong):
    weak, strong = weak_and_strong
    policy = _policy()
    weak_run, _ = _promote(weak, test_split, policy)
    # The strong model is better, but the registry hands back answers that differ from the known ones.
    with pytest.raises(PromotionError, match="failed infra validation"):
        _promote(strong, test_split, policy, known_from=weak)
    assert _alias(policy.registered_model, "champion").run_id == weak_run
    rejected = MlflowClient().get_model_version(policy.registered_model, "2")
    assert rejected.tags["validation_status"] == "failed" and rejected.tags["decision"] == "rejected"
    assert rejected.aliases == []


def test_promoting_the_champion_again_changes_nothing(store, test_split, weak_and_strong):
    weak, _ = weak_and_strong
    policy = _policy()
    run_id, _ = _promote(weak, test_split, policy)
    metrics = metrics_by_source(
        _probabilities(weak, test_split["images"]), test_split["labels"], test_split["sources"], 15
    )
    images = test_split["images"][:32]
    report = promote_candidate(
        run_id, metrics, KnownAnswers(images, _probabilities(weak, images)), test_split, policy, 15
    )
    assert not report["promoted"] and report["champion"] == "1"
    assert report["reasons"] == ["the candidate is already the champion: nothing to do"]
    assert len(MlflowClient().search_model_versions(f"name = '{policy.registered_model}'")) == 1


def test_the_served_classifier_matches_keras(weak_and_strong, test_split, tmp_path):
    _, strong = weak_and_strong
    path = tmp_path / "model.keras"
    strong.save(path)
    served = Classifier(path)
    np.testing.assert_allclose(
        served(test_split["images"], max_batch=64), _probabilities(strong, test_split["images"]), atol=1e-5
    )
