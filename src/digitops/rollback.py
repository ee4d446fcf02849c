"""Rollback: move `@champion` back to an earlier version, validated, recorded, and packaged to serve.

`digitops rollback` calls `rollback_champion`, then `repackage`. By default it goes back to the version
that the current champion replaced (its `previous_champion` tag, which promote sets when the alias moves);
run again, it goes one further back along the same tags. The target must have passed infra validation when
it was registered (`validation_status: passed`, as packaging demands) and passes it again now: its ONNX
file, loaded as the service loads it, must reproduce its own Keras model (the registered `model.keras`) on
the test split, as promote checks a candidate. Only then do the tags and the alias change, the alias last:
a refusal leaves the champion as it was.

The version rolled back from gets the tag `rolled_back_to`, which keeps promote from giving it (or a new
candidate with the same ONNX file) an alias again; `rollback --to` that version deliberately clears it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from digitops.errors import DigitopsError
from digitops.promote import (
    CHAMPION,
    MODEL_SHA256,
    PREVIOUS_CHAMPION,
    ROLLBACK_AT,
    ROLLBACK_BY,
    ROLLBACK_REASON,
    ROLLED_BACK_FROM,
    ROLLED_BACK_TO,
    ParityReference,
    served_model_sha256,
    utc_now,
    validate_served_model,
)
from digitops.sampling import stratified_sample

KERAS_FILE = Path("extra_files") / "model.keras"  # beside model.onnx in a registered version (tracking.py)
ROLLBACK_VALIDATION = "rollback.validation"  # "passed" or "skipped", on the version rolled back to


class RollbackError(DigitopsError):
    """The rollback was refused (no target, no such version, validation failed); the champion is unchanged."""


@dataclass(frozen=True)
class ParityDigits:
    """The known-answer digits that the target must reproduce (see `parity_reference`)."""

    images: np.ndarray  # (N, 28, 28) uint8, the test split
    labels: np.ndarray  # (N,) int
    known_answers: int  # promote.known_answers: how many of them must match in probabilities too
    seed: int  # base.seed: picks the same known-answer digits as promote does


def rollback_champion(
    registered_model: str,
    *,
    to: str | None,
    reason: str,
    by: str,
    test: ParityDigits | None,
    tolerance: float,
) -> dict[str, Any]:
    """Move `@champion` of `registered_model` back to version `to` (default: the champion's previous one).

    Args:
        registered_model: the registered model (MLflow must already point at its store).
        to: the version to make champion; None for the current champion's `previous_champion` tag.
        reason: why, recorded in the registry.
        by: who, recorded in the registry.
        test: the test split for infra validation; None skips it (recorded as skipped).
        tolerance: promote.parity_tolerance.

    Returns:
        The report: versions from and to, who, why, when, and the infra validation's figures.

    Raises:
        RollbackError: no champion; no target (no `previous_champion` tag and no `to`); the target does not
            exist, is already champion, did not pass validation when registered, or fails it now.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    if not reason.strip():
        raise RollbackError("say why with --reason: it is recorded in the registry with the rollback")
    client = MlflowClient()
    try:
        current = client.get_model_version_by_alias(registered_model, CHAMPION)
    except MlflowException as error:
        raise RollbackError(
            f"no champion to roll back: {registered_model}@{CHAMPION} does not resolve ({error.message})"
        ) from None
    current_version = str(current.version)
    target_version = to if to is not None else current.tags.get(PREVIOUS_CHAMPION)
    if target_version is None:
        raise RollbackError(
            f"{registered_model} version {current_version} (@{CHAMPION}) has no {PREVIOUS_CHAMPION} tag: it "
            "was the first champion, or was promoted before promote recorded its predecessor. Name the "
            "version to go back to with --to VERSION"
        )
    if target_version == current_version:
        raise RollbackError(f"{registered_model} version {current_version} is already @{CHAMPION}")
    target = _existing_version(client, registered_model, target_version)
    status = target.tags.get("validation_status")
    if status != "passed":
        raise RollbackError(
            f"{registered_model} version {target_version} has validation_status {status!r}, not 'passed': "
            "only a version that passed infra validation may serve"
        )

    validation = None
    with tempfile.TemporaryDirectory() as scratch:
        folder = _download(registered_model, target_version, Path(scratch) / "to")
        if test is not None:
            validation = validate_served_model(folder, parity_reference(folder, test), tolerance)
            if not validation["passed"]:
                raise RollbackError(
                    f"{registered_model} version {target_version} failed infra validation again "
                    f"({validation.get('error') or _mismatch(validation)}); @{CHAMPION} stays on version "
                    f"{current_version}"
                )
        from_sha256 = current.tags.get(MODEL_SHA256)
        if from_sha256 is None:  # promoted before promote recorded it: the mark needs it to catch repeats
            from_folder = _download(registered_model, current_version, Path(scratch) / "from")
            from_sha256 = served_model_sha256(from_folder)

    at = utc_now()
    record = {ROLLBACK_AT: at, ROLLBACK_BY: by, ROLLBACK_REASON: reason}
    for key, value in {**record, ROLLED_BACK_TO: target_version}.items():
        client.set_model_version_tag(registered_model, current_version, key, value)
    if from_sha256 is not None:
        client.set_model_version_tag(registered_model, current_version, MODEL_SHA256, from_sha256)
    checked = "skipped" if validation is None else "passed"
    for key, value in {**record, ROLLED_BACK_FROM: current_version, ROLLBACK_VALIDATION: checked}.items():
        client.set_model_version_tag(registered_model, target_version, key, value)
    if ROLLED_BACK_TO in target.tags:  # chosen by hand after it was rolled back from: no longer barred
        client.delete_model_version_tag(registered_model, target_version, ROLLED_BACK_TO)
    client.set_registered_model_alias(registered_model, CHAMPION, target_version)  # what serves: last
    return {
        "registered_model": registered_model,
        "from": current_version,
        "to": target_version,
        "at": at,
        "by": by,
        "reason": reason,
        "infra_validation": validation if validation is not None else "skipped",
    }


def parity_reference(folder: Path, test: ParityDigits) -> ParityReference:
    """The registered version's own Keras answers on the test split, the known answers picked as promote
    picks them (pipeline/promote.py): what its ONNX file must reproduce."""
    import keras

    from digitops.train import predict_probabilities

    keras_file = folder / KERAS_FILE
    if not keras_file.is_file():
        raise RollbackError(
            f"the registered version has no {KERAS_FILE} to validate its ONNX file against; "
            "--skip-validation rolls back without it"
        )
    model = keras.saving.load_model(keras_file, compile=False)
    count = min(test.known_answers, len(test.labels))
    known = np.sort(stratified_sample(test.labels, count, np.random.default_rng(test.seed)))
    return ParityReference(test.images, predict_probabilities(model, test.images), known)


def repackage(
    registered_model: str, bentofile: Path, reader_model: str | None = None
) -> dict[str, str | None]:
    """Package the champion as the package stage does (pipeline/package.py): `digits:latest` in the
    BentoML store, which `make serve` serves, with `reader_model`'s champion string reader and the
    challenger beside it if there are, and a bento. Returns the versions and the models' and the bento's
    tags."""
    from digitops.package import build_bento, import_challenger, import_champion

    model_tag, version = import_champion(registered_model, registered_model, reader_model)
    challenger_tag, challenger = import_challenger(registered_model, model_tag) or (None, None)
    return {
        "champion": version,
        "bento_model": model_tag,
        "challenger": challenger,
        "challenger_model": challenger_tag,
        "bento": build_bento(bentofile, model_tag),
    }


def _existing_version(client, registered_model: str, version: str):
    """The model version, or a RollbackError that lists the versions there are."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(registered_model, version)
    except MlflowException:
        versions = sorted(
            (str(found.version) for found in client.search_model_versions(f"name = '{registered_model}'")),
            key=int,
        )
        raise RollbackError(
            f"{registered_model} has no version {version!r} (versions: {', '.join(versions) or 'none'})"
        ) from None


def _download(registered_model: str, version: str, destination: Path) -> Path:
    import mlflow

    destination.mkdir(parents=True)
    uri = f"models:/{registered_model}/{version}"
    return Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(destination)))


def _mismatch(validation: dict[str, Any]) -> str:
    return (
        f"{validation['mismatched_digits']} of {validation['digits']} test digits answered differently; "
        "largest probability difference on the known answers "
        f"{validation['max_probability_difference']:.2e}, "
        f"tolerance {validation['tolerance']:.0e}"
    )
