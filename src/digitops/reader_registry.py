"""The string reader in the MLflow registry: each trained reader is registered, and becomes `@champion` only
when it reads the composed test lines at least as well as the champion does (both scored now, on the same
lines, through ONNX Runtime as they serve); the package stage ships the champion beside the classifier.

A registered model of its own (params.yaml `reader.registered_model`), apart from the classifier's: the two
are trained, judged and rolled back on different evidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digitops.infer.classifier import MODEL_FILE
from digitops.strings import ALPHABET, READER_HEIGHT

CHAMPION = (
    "champion"  # the alias that serves, as for the classifier (this module keeps promote's imports out)
)


@dataclass(frozen=True)
class ReaderDecision:
    version: str  # the candidate's registry version
    promoted: bool
    reason: str
    champion_before: str | None  # the version that was @champion, None when there was none


def log_reader(onnx_path: Path) -> str:
    """Log the reader's ONNX file as the model `reader` of the active run; returns its model URI.

    The signature is written out rather than inferred from an example: lines have any width, and an
    example would fix it (and MLflow's JSON round trip of an example loses its uint8 type).
    """
    import mlflow
    import onnx
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, READER_HEIGHT, -1), "line")]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, -1, len(ALPHABET) + 1))]),
    )
    info = mlflow.onnx.log_model(
        onnx.load(str(onnx_path)), name="reader", signature=signature, save_as_external_data=False
    )
    return info.model_uri


def champion_reader(registered_model: str, destination: Path) -> tuple[Path, str] | None:
    """Download `models:/<registered_model>@champion`: its ONNX file and version; None when there is none."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        version = MlflowClient().get_model_version_by_alias(registered_model, CHAMPION)
    except MlflowException:
        return None
    folder = mlflow.artifacts.download_artifacts(
        f"models:/{registered_model}/{version.version}", dst_path=str(destination)
    )
    return Path(folder) / MODEL_FILE, str(version.version)


def register_and_gate(
    model_uri: str,
    registered_model: str,
    candidate_accuracy: float,
    champion: tuple[str, float] | None,
    min_improvement: float,
    floor: float,
) -> ReaderDecision:
    """Register the candidate (tagged with its test line accuracy) and move `@champion` to it when it reads
    at least `floor` of the test lines and at least `min_improvement` more of them than the champion
    (`champion`: its version and accuracy on the same lines; None when there is none yet).

    Below the floor a reader never serves, first or not: /read then classifies the digits segmentation
    finds, as a model packaged without a reader does.
    """
    import mlflow
    from mlflow import MlflowClient

    version = mlflow.register_model(
        model_uri, registered_model, tags={"metric.test_line_accuracy": f"{candidate_accuracy:.6g}"}
    )
    if candidate_accuracy < floor:
        promoted = False
        reason = f"reads {candidate_accuracy:.4f} of the test lines, below the floor of {floor:.4f}"
    elif champion is None:
        promoted, reason = True, "no champion yet"
    else:
        champion_version, champion_accuracy = champion
        promoted = candidate_accuracy >= champion_accuracy + min_improvement
        verb = "reads" if promoted else "does not read"
        reason = (
            f"{verb} at least {min_improvement:+.4f} of the test lines beyond version {champion_version} "
            f"({candidate_accuracy:.4f} against {champion_accuracy:.4f})"
        )
    if promoted:
        MlflowClient().set_registered_model_alias(registered_model, CHAMPION, version.version)
    return ReaderDecision(str(version.version), promoted, reason, champion[0] if champion else None)
