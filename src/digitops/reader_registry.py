"""The string reader in the MLflow registry: each trained reader is registered, and becomes `@champion` only
when it reads composed test lines at least as well as the champion does (both scored now, on the same
lines, through ONNX Runtime as they serve); the package stage ships the champion beside the classifier.

Test lines are composed by the code of the day, so a change to the composer changes them too, towards what
the candidate was trained on. Each reader run therefore keeps its test lines (`log_test_lines`), and the
gate also compares the two readers on the champion's own test lines: a candidate must be at least as good
on both sets, not only on the lines it was made for.

A registered model of its own (params.yaml `reader.registered_model`), apart from the classifier's: the two
are trained, judged and rolled back on different evidence.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digitops.infer.classifier import MODEL_FILE
from digitops.io import load_npz, save_npz
from digitops.strings import ALPHABET, READER_HEIGHT, ComposedLines

CHAMPION = (
    "champion"  # the alias that serves, as for the classifier (this module keeps promote's imports out)
)


TEST_LINES = "test_lines.npz"  # the run artifact holding a reader's test lines


@dataclass(frozen=True)
class Champion:
    model: Path  # its ONNX file, downloaded
    version: str
    run_id: str  # the run that trained it (and kept its test lines: `kept_test_lines`)


@dataclass(frozen=True)
class LineScores:
    """The candidate's and the champion's line accuracy on one set of test lines."""

    lines: str  # which set, in words: "the candidate's test lines"
    candidate: float
    champion: float


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


def log_test_lines(lines: ComposedLines) -> None:
    """Keep the lines a reader was tested on with its run (`TEST_LINES`), for the gates after it."""
    import mlflow

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / TEST_LINES
        save_npz(path, images=lines.images, labels=lines.labels, sources=lines.sources.astype(str))
        mlflow.log_artifact(str(path))


def champion_reader(registered_model: str, destination: Path) -> Champion | None:
    """Download `models:/<registered_model>@champion`: its ONNX file, version and run; None when there is
    none."""
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
    return Champion(Path(folder) / MODEL_FILE, str(version.version), version.run_id)


def kept_test_lines(run_id: str, destination: Path) -> ComposedLines | None:
    """The test lines a reader's run kept (`log_test_lines`); None for a run from before they were kept."""
    import mlflow
    from mlflow import MlflowClient

    if TEST_LINES not in [item.path for item in MlflowClient().list_artifacts(run_id)]:
        return None
    path = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=TEST_LINES, dst_path=str(destination)
    )
    arrays = load_npz(path)
    return ComposedLines(arrays["images"], arrays["labels"], arrays["sources"])


def register_and_gate(
    model_uri: str,
    registered_model: str,
    candidate_accuracy: float,
    champion_version: str | None,
    comparisons: Sequence[LineScores],
    min_improvement: float,
    floor: float,
) -> ReaderDecision:
    """Register the candidate (tagged with its test line accuracy) and move `@champion` to it when it reads
    at least `floor` of its test lines and, on every set of `comparisons` (the candidate's test lines, and
    the champion's own when it kept them), at least `min_improvement` more lines than the champion
    (`champion_version`: None when there is none yet, and then `comparisons` are empty).

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
    elif champion_version is None:
        promoted, reason = True, "no champion yet"
    else:
        short = [c for c in comparisons if c.candidate < c.champion + min_improvement]
        promoted = not short
        verb = "reads" if promoted else "does not read"
        evidence = "; ".join(
            f"{c.lines}: {c.candidate:.4f} against {c.champion:.4f}" for c in (short or comparisons)
        )
        beyond = f"at least {min_improvement:+.4f} of the lines beyond version {champion_version}"
        reason = f"{verb} {beyond} ({evidence})"
    if promoted:
        MlflowClient().set_registered_model_alias(registered_model, CHAMPION, version.version)
    return ReaderDecision(str(version.version), promoted, reason, champion_version)
