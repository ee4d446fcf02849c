"""Promotion against a real MLflow registry (sqlite store in a temporary folder) with real Keras models,
logged as the train stage logs them (ONNX, the Keras file beside it): aliases move only when the gate passes
and infra validation (the ONNX model answers as the Keras one) holds; otherwise the champion stays."""

from __future__ import annotations

import itertools
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from digitops.config import PromoteParams
from digitops.evaluate import evaluation_report, metrics_by_source
from digitops.export import export_onnx
from digitops.models import build_model
from digitops.promote import ParityReference, PromotionError, gate_metrics, promote_candidate
from digitops.tracking import configure, log_candidate_model
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


def _log(model: keras.Model, scratch: Path) -> str:
    """Log `model` as the train stage does (ONNX, the Keras file beside it); returns the run id."""
    scratch.mkdir(parents=True, exist_ok=True)
    keras_file, onnx_file = scratch / "model.keras", scratch / "model.onnx"
    model.save(keras_file)
    export_onnx(model, onnx_file)
    with mlflow.start_run() as run:
        log_candidate_model(onnx_file, keras_file, input_example=np.zeros((1, 28, 28), np.uint8))
    return run.info.run_id


def _probabilities(model: keras.Model, images: np.ndarray) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(images, training=False))


def _reference(model, test_split) -> ParityReference:
    """`model`'s answers on the whole fake test split, the first 32 digits as the known answers."""
    images = test_split["images"]
    return ParityReference(images, _probabilities(model, images), known=np.arange(32))


def _promote(model, test_split, policy, tmp_path, reference_from=None, before_promotion=None, card=None):
    """Log `model` and put it through promotion, with the parity reference of `reference_from` (default:
    itself); `before_promotion(run_id)` runs between logging and promoting; `card` renders the card."""
    metrics = metrics_by_source(
        _probabilities(model, test_split["images"]), test_split["labels"], test_split["sources"], 15
    )
    run_id = _log(model, tmp_path / f"model-{next(_names)}")
    if before_promotion:
        before_promotion(run_id)
    reference = _reference(reference_from or model, test_split)
    return run_id, promote_candidate(run_id, metrics, reference, test_split, policy, 15, card)


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
        parity_tolerance=1e-4,
    )
    return PromoteParams(**{**defaults, **changes})


def _alias(name: str, alias: str):
    return MlflowClient().get_model_version_by_alias(name, alias)


def test_the_first_candidate_becomes_champion_after_infra_validation(
    store, test_split, weak_and_strong, tmp_path
):
    weak, _ = weak_and_strong
    policy = _policy()
    run_id, report = _promote(weak, test_split, policy, tmp_path)
    champion = _alias(policy.registered_model, "champion")
    assert report["promoted"] and report["champion"] == str(champion.version) == "1"
    assert champion.run_id == run_id
    assert champion.tags["validation_status"] == "passed" and champion.tags["decision"] == "champion"
    assert float(champion.tags["metric.overall.accuracy"]) == pytest.approx(
        report["candidate"]["metrics"]["overall"]["accuracy"]
    )
    validation = report["infra_validation"]
    assert validation["passed"] and validation["runtime"].startswith("onnxruntime ")
    assert validation["digits"] == 200 and validation["known_answer_digits"] == 32
    assert validation["mismatched_digits"] == 0
    assert validation["max_probability_difference"] <= 1e-5
    assert champion.tags["parity.mismatched_digits"] == "0"
    # The registered version carries both: the ONNX model that serves and the Keras file it came from.
    folder = Path(
        mlflow.artifacts.download_artifacts(f"models:/{policy.registered_model}/1", dst_path=str(tmp_path))
    )
    assert (folder / "model.onnx").is_file() and (folder / "extra_files" / "model.keras").is_file()
    assert mlflow.models.get_model_info(f"models:/{policy.registered_model}/1").flavors.keys() >= {"onnx"}


def test_a_better_candidate_takes_the_alias(store, test_split, weak_and_strong, tmp_path):
    weak, strong = weak_and_strong
    policy = _policy()
    _promote(weak, test_split, policy, tmp_path)
    run_id, report = _promote(strong, test_split, policy, tmp_path)
    assert report["promoted"] and report["champion_before"]["version"] == "1"
    # The champion's re-evaluation carries per-digit figures, so every source's digits were compared.
    assert report["champion_before"]["metrics_on_this_test_split"]["usps"]["digits"]["1"]["count"] == 5
    assert sum(reason.startswith("pass: mnist digit(s) 0, 1, 2") for reason in report["reasons"]) == 1
    assert sum(reason.startswith("pass: usps digit(s) 0, 1, 2") for reason in report["reasons"]) == 1
    assert _alias(policy.registered_model, "champion").run_id == run_id


def test_the_champion_is_measured_without_contributed_digits_as_the_candidate_is(
    store, test_split, weak_and_strong, tmp_path
):
    """With drawings in the test split, the gate compares the two models on the other digits only."""
    weak, strong = weak_and_strong
    policy = _policy()
    _promote(weak, test_split, policy, tmp_path)
    split = {**test_split, "sources": np.where(np.arange(200) < 150, test_split["sources"], "drawings")}
    probabilities = _probabilities(strong, split["images"])
    evaluation = evaluation_report(
        probabilities, split["labels"], split["sources"], {}, 15, ("mnist",), 5, ("drawings",)
    )
    metrics = gate_metrics(evaluation, split["sources"], ("drawings",))
    run_id = _log(strong, tmp_path / f"model-{next(_names)}")
    report = promote_candidate(run_id, metrics, _reference(strong, split), split, policy, 15)
    champion = report["champion_before"]["metrics_on_this_test_split"]
    assert report["promoted"] and set(champion) == set(report["candidate"]["metrics"]) == {"mnist", "overall"}
    assert champion["overall"]["count"] == report["candidate"]["metrics"]["overall"]["count"] == 150
    assert report["infra_validation"]["digits"] == 200  # parity still covers every test digit


def test_a_worse_candidate_becomes_challenger_and_the_champion_stays(
    store, test_split, weak_and_strong, tmp_path
):
    weak, strong = weak_and_strong
    policy = _policy()
    strong_run, _ = _promote(strong, test_split, policy, tmp_path)
    weak_run, report = _promote(weak, test_split, policy, tmp_path)
    assert not report["promoted"] and report["alias"] == "challenger"
    assert any(reason.startswith("FAIL: overall accuracy") for reason in report["reasons"])
    # The champion was re-evaluated on the same test digits the candidate was measured on.
    assert report["champion_before"]["metrics_on_this_test_split"]["overall"]["accuracy"] > 0.9
    assert _alias(policy.registered_model, "champion").run_id == strong_run
    assert _alias(policy.registered_model, "challenger").run_id == weak_run


def test_failing_infra_validation_leaves_the_champion_untouched(store, test_split, weak_and_strong, tmp_path):
    weak, strong = weak_and_strong
    policy = _policy()
    weak_run, _ = _promote(weak, test_split, policy, tmp_path)
    # The strong model is better, but its served answers differ from the reference ones.
    with pytest.raises(PromotionError, match=r"failed infra validation .*changed [1-9]"):
        _promote(strong, test_split, policy, tmp_path, reference_from=weak)
    assert _alias(policy.registered_model, "champion").run_id == weak_run
    rejected = MlflowClient().get_model_version(policy.registered_model, "2")
    assert rejected.tags["validation_status"] == "failed" and rejected.tags["decision"] == "rejected"
    assert rejected.aliases == []


def test_promoting_the_champion_again_changes_nothing(store, test_split, weak_and_strong, tmp_path):
    weak, _ = weak_and_strong
    policy = _policy()
    run_id, _ = _promote(weak, test_split, policy, tmp_path)
    metrics = metrics_by_source(
        _probabilities(weak, test_split["images"]), test_split["labels"], test_split["sources"], 15
    )
    report = promote_candidate(run_id, metrics, _reference(weak, test_split), test_split, policy, 15)
    assert not report["promoted"] and report["champion"] == "1"
    assert report["reasons"] == ["the candidate is already the champion: nothing to do"]
    assert len(MlflowClient().search_model_versions(f"name = '{policy.registered_model}'")) == 1


def test_a_truncated_onnx_file_fails_infra_validation_with_its_reason(
    store, test_split, weak_and_strong, tmp_path
):
    weak, strong = weak_and_strong
    policy = _policy()
    weak_run, _ = _promote(weak, test_split, policy, tmp_path)

    def truncate_the_stored_model(run_id: str) -> None:
        (logged,) = mlflow.search_logged_models(
            filter_string=f"source_run_id = '{run_id}'", output_format="list"
        )
        stored = Path(logged.artifact_location.removeprefix("file://")) / "model.onnx"
        stored.write_bytes(stored.read_bytes()[:1000])

    with pytest.raises(PromotionError, match=r"failed infra validation .*ONNX Runtime cannot load it"):
        _promote(strong, test_split, policy, tmp_path, before_promotion=truncate_the_stored_model)
    assert _alias(policy.registered_model, "champion").run_id == weak_run
    rejected = MlflowClient().get_model_version(policy.registered_model, "2")
    assert rejected.tags["validation_status"] == "failed" and rejected.tags["decision"] == "rejected"


def test_every_promoted_version_gets_its_card_before_any_alias_moves(
    store, test_split, weak_and_strong, tmp_path
):
    strong_model, weak_model = weak_and_strong[1], weak_and_strong[0]
    policy = _policy()
    name = policy.registered_model
    rendered: dict[str, dict] = {}

    def card(report, tags) -> str:
        version = report["candidate"]["version"]
        held = MlflowClient().get_registered_model(name).aliases  # alias -> version, as they stand now
        rendered[version] = {"tags": dict(tags), "aliases_then": {a: str(v) for a, v in held.items()}}
        return f"# Model card: {name} version {version}\n\nalias {report['alias']}, {tags['decision']}\n"

    _promote(strong_model, test_split, policy, tmp_path, card=card)  # version 1: champion
    _, report = _promote(weak_model, test_split, policy, tmp_path, card=card)  # version 2: challenger
    assert report["alias"] == "challenger"
    for version, alias in (("1", "champion"), ("2", "challenger")):
        folder = Path(
            mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=str(tmp_path / version))
        )
        text = (folder / "model_card.md").read_text()
        assert text == f"# Model card: {name} version {version}\n\nalias {alias}, {alias}\n"
        # Rendered with the version's tags after the decision, before the alias moved onto it.
        assert rendered[version]["tags"]["validation_status"] == "passed"
        assert version not in rendered[version]["aliases_then"].values()
    assert rendered["1"]["aliases_then"] == {} and rendered["2"]["aliases_then"] == {"champion": "1"}
