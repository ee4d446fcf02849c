"""Packaging: the registry's champion -> the BentoML model store -> a bento.

BentoML keeps its model store and bentos under BENTOML_HOME (default ~/bentoml). Each run of the package
stage imports the champion afresh, so `digits:latest` in the store is always the last packaged champion,
which is what `bentoml serve digitops.serve.service:DigitClassifier` loads.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from digitops.errors import DigitopsError
from digitops.infer.classifier import MODEL_CARD, MODEL_FILE, ModelFileError, find_model_file
from digitops.promote import CHAMPION

# The registry tag that promote sets on a version after infra validation, and the value that may ship.
VALIDATION_STATUS = "validation_status"
PASSED = "passed"


class PackagingError(DigitopsError):
    """There is no validated champion to package, or `bentoml build` failed."""


def import_champion(registered_model: str, bento_model_name: str) -> tuple[str, str]:
    """Copy the version that `models:/<registered_model>@champion` names into the BentoML model store.

    The alias is resolved once and that exact version is downloaded (`models:/<name>/<version>`): an alias
    moved meanwhile cannot swap the files under the labels. Only a version that passed infra validation
    (tag `validation_status: passed`, set by promote) ships: an alias moved by hand onto another version
    is refused, not packaged.

    Returns:
        The new BentoML model's tag and the registry version it holds.

    Raises:
        PackagingError: the alias does not resolve, the version did not pass validation, or it has no ONNX
            file. Nothing is added to the model store then.

    The BentoML model holds the ONNX file (what the service runs; the Keras file stays in the registry)
    and the version's model card beside it when promote recorded one (a version registered before model
    cards has none: it still ships, and `GET /model` says so). It is labelled with the registry name,
    version and run, and carries the version's metric tags as metadata.
    """
    import bentoml
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        version = client.get_model_version_by_alias(registered_model, CHAMPION)
    except MlflowException as error:
        raise PackagingError(
            f"no champion to package: {registered_model}@{CHAMPION} does not resolve ({error.message})"
        ) from None
    status = version.tags.get(VALIDATION_STATUS)
    if status != PASSED:
        raise PackagingError(
            f"{registered_model} version {version.version} (@{CHAMPION}) has {VALIDATION_STATUS} "
            f"{status!r}, not {PASSED!r}: only a version that promote validated ships. Point @{CHAMPION} "
            "back at a version that passed: `digitops rollback` (docs/operations.md)"
        )
    with tempfile.TemporaryDirectory() as scratch:
        folder = mlflow.artifacts.download_artifacts(
            f"models:/{registered_model}/{version.version}", dst_path=scratch
        )
        try:
            model_file = find_model_file(Path(folder))
        except ModelFileError:
            raise PackagingError(
                f"{registered_model} version {version.version} (the champion) has no {MODEL_FILE}: it was "
                "registered before models were exported to ONNX; `dvc repro -f train` registers one that has"
            ) from None
        labels = {
            "registered_model": registered_model,
            "mlflow_version": str(version.version),
            "mlflow_run_id": version.run_id,
        }
        metrics = {key: value for key, value in version.tags.items() if key.startswith("metric.")}
        with bentoml.models.create(bento_model_name, labels=labels, metadata=metrics) as bento_model:
            shutil.copyfile(model_file, bento_model.path_of(MODEL_FILE))
            card = model_file.with_name(MODEL_CARD)
            if card.is_file():
                shutil.copyfile(card, bento_model.path_of(MODEL_CARD))
    return str(bento_model.tag), str(version.version)


def build_bento(bentofile: Path, model_tag: str) -> str:
    """`bentoml build` with the service bound to `model_tag`; returns the bento's tag."""
    environment = {**os.environ, "DIGITOPS_BENTO_MODEL": model_tag, "BENTOML_DO_NOT_TRACK": "true"}
    bentoml_cli = Path(sys.executable).with_name("bentoml")
    result = subprocess.run(
        [str(bentoml_cli), "build", "-f", str(bentofile), "--output", "tag"],
        env=environment,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise PackagingError(f"bentoml build failed:\n{result.stdout}{result.stderr}")
    tags = [
        line.removeprefix("__tag__:") for line in result.stdout.splitlines() if line.startswith("__tag__:")
    ]
    if not tags:
        raise PackagingError(f"bentoml build printed no tag:\n{result.stdout}")
    return tags[-1]
