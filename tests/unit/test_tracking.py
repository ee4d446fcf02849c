"""Tracking against a real MLflow store (sqlite, in a temporary folder)."""

from __future__ import annotations

import hashlib
import subprocess

import keras
import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from digitops.tracking import EpochMetrics, configure, flatten, metric_values, run_tags


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One embedded store for the module (creating an sqlite store takes MLflow seconds)."""
    root = tmp_path_factory.mktemp("repo")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        uri = configure("digitops", root)
    yield root, uri
    mlflow.set_tracking_uri(None)


@pytest.fixture
def active(store, monkeypatch):
    """The module's store, selected as the pipeline stages select it."""
    root, _ = store
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    configure("digitops", root)
    return store


def test_embedded_store_lives_at_the_root(active):
    root, uri = active
    assert uri == f"sqlite:///{root / 'mlflow.db'}"
    experiment = mlflow.get_experiment_by_name("digitops")
    assert experiment.artifact_location == (root / "mlartifacts").as_uri()
    with mlflow.start_run() as run:
        mlflow.log_text("hello", "note.txt")
    assert (root / "mlartifacts" / run.info.run_id / "artifacts" / "note.txt").read_text() == "hello"


def test_the_environment_names_another_store(active, tmp_path, monkeypatch):
    _, uri = active
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert configure("digitops", tmp_path / "elsewhere") == uri
    assert not (tmp_path / "elsewhere").exists()  # nothing written at the other root


def test_epoch_metrics_are_logged_per_epoch(active):
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(0).normal(size=(32, 2))
    with mlflow.start_run() as run:
        model.fit(x, x.sum(axis=1), epochs=3, verbose=0, callbacks=[EpochMetrics()])
    history = MlflowClient().get_metric_history(run.info.run_id, "epoch.loss")
    assert [point.step for point in history] == [0, 1, 2]
    assert history[-1].value < history[0].value


def test_flatten_params():
    assert flatten({"train": {"epochs": 2, "model_kwargs": {}}, "base": {"paths": {"raw": "data/raw"}}}) == {
        "train.epochs": 2,
        "train.model_kwargs": {},
        "base.paths.raw": "data/raw",
    }


def test_metric_values_keep_the_numbers_of_a_report_and_log_as_mlflow_metrics(active):
    report = {
        "mnist": {
            "accuracy": 0.99,
            "count": 20,
            "digits": {"1": {"accuracy": 0.5, "count": 2}},
            "confusions": [{"true": 1, "predicted": 7, "count": 1}],
        },
        "flag": True,
        "worst_source": "mnist",
        "nothing": None,
    }
    metrics = metric_values(report, "test.")
    assert metrics == {
        "test.mnist.accuracy": 0.99,
        "test.mnist.count": 20.0,
        "test.mnist.digits.1.accuracy": 0.5,
        "test.mnist.digits.1.count": 2.0,
    }
    with mlflow.start_run() as run:
        mlflow.log_metrics(metrics)
    assert MlflowClient().get_run(run.info.run_id).data.metrics["test.mnist.digits.1.accuracy"] == 0.5


def test_run_tags_fingerprint_data_and_code(tmp_path):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "train.npz").write_bytes(b"digits")
    subprocess.run(["git", "add", "."], cwd=tmp_path, check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"], cwd=tmp_path, check=True
    )
    tags = run_tags(tmp_path, [tmp_path / "train.npz"])
    assert tags["data.train.npz.sha256"] == hashlib.sha256(b"digits").hexdigest()
    assert len(tags["git.commit"]) == 40 and tags["git.dirty"] == "false"
    (tmp_path / "train.npz").write_bytes(b"other digits")
    changed = run_tags(tmp_path, [tmp_path / "train.npz"])
    assert changed["data.fingerprint"] != tags["data.fingerprint"] and changed["git.dirty"] == "true"
