"""MLflow tracking: where runs go, and what a pipeline run records.

Nothing happens on import: stages call `configure()`. The store is `MLFLOW_TRACKING_URI` when set (a
tracking server, say), otherwise the embedded default: `sqlite:///mlflow.db` with artifacts under
`mlartifacts/`, both at the repository root. One MLflow run spans the train and evaluate stages: train
starts it and writes its id to `models/run.json`, evaluate resumes it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import keras
import mlflow
import numpy as np

from digitops.fingerprint import file_sha256

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"


def configure(experiment: str, root: Path) -> str:
    """Point MLflow at the store and select (or create) `experiment`; returns the tracking URI."""
    named_uri = os.environ.get(TRACKING_URI_ENV)  # read first: set_tracking_uri() exports the variable
    uri = named_uri or f"sqlite:///{(root / 'mlflow.db').resolve()}"
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(experiment) is None:
        # The embedded store keeps artifacts beside it, in mlartifacts/; a server decides for itself.
        artifacts = None if named_uri else (root / "mlartifacts").resolve().as_uri()
        mlflow.create_experiment(experiment, artifact_location=artifacts)
    mlflow.set_experiment(experiment)
    return uri


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train": {"epochs": 2}} -> {"train.epochs": 2}: params.yaml as MLflow params."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def metric_values(tree: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The numbers of a nested report as MLflow metrics: {"mnist": {"accuracy": 0.99, "confusions": [...]}}
    -> {"mnist.accuracy": 0.99}. Lists, text and nulls are left out (MLflow metrics are numbers only)."""
    return {
        name: float(value)
        for name, value in flatten(tree, prefix).items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }


def run_tags(root: Path, data_files: Iterable[Path]) -> dict[str, str]:
    """What the run was made from: the git commit, the DVC experiment, the SHA-256 of each data file."""
    data_hashes = {f"data.{path.name}.sha256": file_sha256(path) for path in data_files}
    tags = {
        **data_hashes,
        "data.fingerprint": hashlib.sha256("".join(sorted(data_hashes.values())).encode()).hexdigest()[:16],
    }
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True
        ).stdout
        tags["git.commit"] = commit
        tags["git.dirty"] = str(bool(dirty.strip())).lower()
    except (OSError, subprocess.CalledProcessError):
        tags["git.commit"] = "unknown"
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc.experiment"] = os.environ["DVC_EXP_NAME"]
    return tags


def log_candidate_model(
    onnx_path: Path, keras_path: Path, input_example: np.ndarray, extra_files: Iterable[Path] = ()
) -> None:
    """Log the candidate as the registry will hold it, in the active run, as the model `model`.

    The `onnx` flavour (what serves, with the signature inferred from `input_example`), one self-contained
    `model.onnx` file, and the Keras model it was exported from beside it as `extra_files/<name>.keras`
    (for fine-tuning and for the promote stage's parity check): every registered version carries both.
    `extra_files` go beside it, as `extra_files/<name>` (the train stage's reference profile, which the
    package stage ships with the model).
    """
    import onnx

    mlflow.onnx.log_model(
        onnx.load(str(onnx_path)),
        name="model",
        input_example=input_example,
        extra_files=[str(keras_path), *map(str, extra_files)],
        save_as_external_data=False,
    )


class EpochMetrics(keras.callbacks.Callback):
    """Logs Keras' per-epoch metrics (loss, accuracy, val_loss, val_accuracy, learning_rate) to the
    active MLflow run, one step per epoch."""

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        if logs:
            mlflow.log_metrics({f"epoch.{name}": float(value) for name, value in logs.items()}, step=epoch)
