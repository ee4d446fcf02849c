"""Packaging: the registry's champion -> the BentoML model store -> a bento.

BentoML keeps its model store and bentos under BENTOML_HOME (default ~/bentoml). Each run of the package
stage imports the champion afresh, so `digits:latest` in the store is always the last packaged champion,
which is what `bentoml serve digitops.serve.service:DigitClassifier` loads. When the registry also has a
validated `challenger`, it is imported beside the champion (`import_challenger`), labelled with the
champion's tag, and the service ships it in the bento and shadows it (digitops.serve.shadow).
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
from digitops.infer.reader import READER_FILE
from digitops.monitoring import PROFILE_FILE
from digitops.promote import CHALLENGER, CHAMPION
from digitops.reader_registry import champion_reader

# The registry tag that promote sets on a version after infra validation, and the value that may ship.
VALIDATION_STATUS = "validation_status"
PASSED = "passed"


class PackagingError(DigitopsError):
    """There is no validated champion to package, or `bentoml build` failed."""


def import_champion(
    registered_model: str, bento_model_name: str, reader_model: str | None = None
) -> tuple[str, str]:
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

    The BentoML model holds the ONNX file (what the service runs; the Keras file stays in the registry) and,
    when the version has them, the reference profile its drift gauges compare served digits with
    (digitops.monitoring; without it the service serves unmonitored) and its model card (`GET /model`; a
    version registered before model cards still ships, and `/model` says it has none). It is labelled with
    the registry name, version and run, and carries the version's metric tags as metadata.
    """
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
    return _store_version(registered_model, version, bento_model_name, {}, reader_model), str(version.version)


def import_challenger(registered_model: str, champion_model_tag: str) -> tuple[str, str] | None:
    """Copy `models:/<registered_model>@challenger` into the BentoML store, paired with the champion.

    The challenger is optional: without the alias, or when it names a version that did not pass infra
    validation or the champion's own version, nothing is imported and the bento is the champion alone (the
    reason is printed). Otherwise it is stored as `<champion name>-challenger`, labelled like the champion
    (registry name, version, run) and with the champion's BentoML tag (`champion_model_tag`), which is how
    the service finds the challenger packaged with the champion it serves.

    Returns:
        The challenger's BentoML tag and its registry version, or None.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from digitops.serve.shadow import CHAMPION_LABEL, challenger_model_name

    client = MlflowClient()
    try:
        version = client.get_model_version_by_alias(registered_model, CHALLENGER)
        champion = client.get_model_version_by_alias(registered_model, CHAMPION)
    except MlflowException:
        print(f"no challenger packaged: {registered_model} has no @{CHALLENGER}", file=sys.stderr)
        return None
    status = version.tags.get(VALIDATION_STATUS)
    if status != PASSED:
        print(
            f"no challenger packaged: {registered_model} version {version.version} (@{CHALLENGER}) has "
            f"{VALIDATION_STATUS} {status!r}, not {PASSED!r}",
            file=sys.stderr,
        )
        return None
    if version.version == champion.version:
        print(
            f"no challenger packaged: @{CHALLENGER} and @{CHAMPION} are both version {version.version}",
            file=sys.stderr,
        )
        return None
    champion_name = champion_model_tag.split(":")[0]
    tag = _store_version(
        registered_model,
        version,
        challenger_model_name(champion_name),
        {CHAMPION_LABEL: champion_model_tag},
    )
    return tag, str(version.version)


def _store_version(
    registered_model: str,
    version,
    bento_model_name: str,
    labels: dict[str, str],
    reader_model: str | None = None,
) -> str:
    """Download a registry version's ONNX file, with its reference profile and model card when it has them,
    into a new BentoML model; returns the model's tag. With `reader_model`, the string reader that registered
    model's `@champion` names goes beside it as `reader.onnx` (labelled `reader_version`); without a champion
    reader the model ships without one, and /read classifies the digits segmentation finds.

    Labelled with the registry name, version and run besides `labels`; the version's metric tags are its
    metadata.

    Raises:
        PackagingError: the version has no ONNX file. Nothing is added to the model store then.
    """
    import bentoml
    import mlflow

    with tempfile.TemporaryDirectory() as scratch:
        folder = mlflow.artifacts.download_artifacts(
            f"models:/{registered_model}/{version.version}", dst_path=scratch
        )
        try:
            model_file = find_model_file(Path(folder))
        except ModelFileError:
            raise PackagingError(
                f"{registered_model} version {version.version} has no {MODEL_FILE}: it was registered "
                "before models were exported to ONNX; `dvc repro -f train` registers one that has"
            ) from None
        labels = {
            "registered_model": registered_model,
            "mlflow_version": str(version.version),
            "mlflow_run_id": version.run_id,
            **labels,
        }
        metrics = {key: value for key, value in version.tags.items() if key.startswith("metric.")}
        # Absent from versions registered before the train stage made profiles and promote wrote cards
        companions = {
            PROFILE_FILE: Path(folder) / "extra_files" / PROFILE_FILE,
            MODEL_CARD: model_file.with_name(MODEL_CARD),
        }
        reader = champion_reader(reader_model, Path(scratch) / "reader") if reader_model else None
        if reader is not None:
            companions[READER_FILE] = reader.model
            labels["reader_version"] = reader.version
        elif reader_model:
            print(f"no {reader_model}@{CHAMPION} in the registry: the model ships without a string reader")
        with bentoml.models.create(bento_model_name, labels=labels, metadata=metrics) as bento_model:
            shutil.copyfile(model_file, bento_model.path_of(MODEL_FILE))
            for name, path in companions.items():
                if path.is_file():
                    shutil.copyfile(path, bento_model.path_of(name))
    return str(bento_model.tag)


def build_bento(bentofile: Path, model_tag: str) -> str:
    """`bentoml build` with the service bound to `model_tag`; returns the bento's tag.

    The bento holds the challenger imported with that model too, if any (digitops.serve.shadow).
    """
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
