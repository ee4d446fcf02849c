"""Promotion: a pure gate (`should_promote`) and the MLflow registry steps around it.

The candidate is registered as a new version of the registered model and tagged with its metrics. It
gets the alias `champion` only if (1) the gate passes against the current champion, re-evaluated on the
candidate's own test split so both are measured on the same digits, and (2) the registered version, loaded
exactly as the service loads it, gives the candidate's answers on a fixed set of test digits (infra
validation). Otherwise it gets `challenger`, or no alias at all when infra validation fails. Aliases move
last: an error at any earlier step leaves the champion untouched.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from digitops.config import PromoteParams
from digitops.errors import DigitopsError
from digitops.evaluate import metrics_by_source
from digitops.infer.classifier import Classifier, load_classifier

CHAMPION = "champion"
CHALLENGER = "challenger"
OVERALL = "overall"

Metrics = Mapping[str, Mapping[str, float]]  # {"mnist": {"accuracy": ...}, ..., "overall": {...}}


class PromotionError(DigitopsError):
    """The candidate could not be registered or failed infra validation; the champion is unchanged."""


@dataclass(frozen=True)
class Decision:
    promote: bool
    reasons: tuple[str, ...]  # every check made, passed or failed, in words


def should_promote(candidate: Metrics, champion: Metrics | None, policy: PromoteParams) -> Decision:
    """The gate. Never promotes a model that is worse than the champion.

    Checks, on `policy.metric` (higher is better):
    - floors: each source named in `policy.floors` (and "overall") reaches its floor;
    - against a champion (when there is one): overall gains at least `policy.min_improvement`, and no
      source measured for both loses more than `policy.max_source_regression`.

    Args:
        candidate: the candidate's metrics per source and "overall".
        champion: the champion's metrics on the same test digits, or None when there is no champion.
    """
    metric = policy.metric
    passed: list[bool] = []
    reasons: list[str] = []

    def check(ok: bool, text: str) -> None:
        passed.append(ok)
        reasons.append(f"{'pass' if ok else 'FAIL'}: {text}")

    for source, floor in sorted(policy.floors.items()):
        if source not in candidate:
            reasons.append(f"skip: floor for {source}, which is not in this data mix")
            continue
        value = candidate[source][metric]
        check(value >= floor, f"{source} {metric} {value:.4f} vs floor {floor:.4f}")
    if champion is None:
        reasons.append("no champion yet: the floors decide")
    else:
        gain = candidate[OVERALL][metric] - champion[OVERALL][metric]
        check(
            gain >= policy.min_improvement,
            f"overall {metric} {candidate[OVERALL][metric]:.4f} vs champion {champion[OVERALL][metric]:.4f}: "
            f"gain {gain:+.4f}, required {policy.min_improvement:+.4f}",
        )
        for source in sorted(set(candidate) & set(champion) - {OVERALL}):
            change = candidate[source][metric] - champion[source][metric]
            check(
                change >= -policy.max_source_regression,
                f"{source} {metric} {candidate[source][metric]:.4f} vs champion "
                f"{champion[source][metric]:.4f}: change {change:+.4f}, "
                f"largest drop allowed {policy.max_source_regression:.4f}",
            )
    return Decision(promote=all(passed), reasons=tuple(reasons))


@dataclass(frozen=True)
class KnownAnswers:
    """Test digits and the candidate's answers to them, which a reloaded model must reproduce."""

    images: np.ndarray  # (N, 28, 28) uint8
    probabilities: np.ndarray  # (N, 10) float32, from the candidate as trained


def check_known_answers(classifier: Classifier, known: KnownAnswers, tolerance: float = 1e-4) -> dict:
    """Infra validation: the model as served must give the same digits and (nearly) the same probabilities."""
    served = classifier(known.images)
    mismatches = int((served.argmax(axis=1) != known.probabilities.argmax(axis=1)).sum())
    difference = float(np.abs(served - known.probabilities).max()) if len(served) else 0.0
    return {
        "passed": mismatches == 0 and difference <= tolerance,
        "digits": len(known.images),
        "mismatched_digits": mismatches,
        "max_probability_difference": difference,
        "tolerance": tolerance,
    }


def promote_candidate(
    run_id: str,
    candidate_metrics: Metrics,
    known: KnownAnswers,
    test: Mapping[str, np.ndarray],
    policy: PromoteParams,
    calibration_bins: int,
) -> dict[str, Any]:
    """Register the candidate logged by `run_id`, gate it, validate it, move the aliases; returns the report.

    Args:
        run_id: the MLflow run whose logged model is the candidate (MLflow must already point at its store).
        candidate_metrics: the evaluate stage's metrics per source (and "overall").
        known: the known answers for infra validation.
        test: the test split (images, labels, sources) on which the champion is re-evaluated.

    Raises:
        PromotionError: the run has no logged model, or the registered version fails infra validation.
    """
    from mlflow import MlflowClient

    client = MlflowClient()
    name = policy.registered_model
    champion = _version_by_alias(client, name, CHAMPION)
    if champion is not None and champion.run_id == run_id:
        return _report(
            name,
            candidate={"version": str(champion.version), "run_id": run_id, "metrics": candidate_metrics},
            champion_before=champion,
            champion_metrics=None,
            alias=CHAMPION,
            promoted=False,
            reasons=["the candidate is already the champion: nothing to do"],
        )

    champion_metrics = None
    if champion is not None:
        with tempfile.TemporaryDirectory() as scratch:
            classifier = load_classifier(_download(client, name, champion.version, Path(scratch)))
            champion_metrics = metrics_by_source(
                classifier(test["images"]), test["labels"], test["sources"], calibration_bins
            )
    decision = should_promote(candidate_metrics, champion_metrics, policy)

    version = _register(client, name, run_id, candidate_metrics)
    with tempfile.TemporaryDirectory() as scratch:
        validation = check_known_answers(
            load_classifier(_download(client, name, version, Path(scratch))), known
        )
    client.set_model_version_tag(
        name, version, "validation_status", "passed" if validation["passed"] else "failed"
    )
    if not validation["passed"]:
        client.set_model_version_tag(name, version, "decision", "rejected")
        raise PromotionError(
            f"{name} version {version} failed infra validation ({validation['mismatched_digits']} of "
            f"{validation['digits']} known answers changed, largest probability difference "
            f"{validation['max_probability_difference']:.2e}); the champion is unchanged"
        )

    alias = CHAMPION if decision.promote else CHALLENGER
    client.set_model_version_tag(name, version, "decision", alias)
    client.set_registered_model_alias(name, alias, version)  # the only step that changes what serves
    return _report(
        name,
        candidate={"version": version, "run_id": run_id, "metrics": candidate_metrics},
        champion_before=champion,
        champion_metrics=champion_metrics,
        alias=alias,
        promoted=decision.promote,
        reasons=list(decision.reasons),
        validation=validation,
    )


def _version_by_alias(client, name: str, alias: str):
    """The model version holding `alias`, or None when the registered model or the alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def _register(client, name: str, run_id: str, metrics: Metrics) -> str:
    """The version registered for the model logged by `run_id` (registered now unless it already is)."""
    import mlflow

    existing = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    if existing:
        return str(existing[0].version)
    logged = mlflow.search_logged_models(
        experiment_ids=[client.get_run(run_id).info.experiment_id],
        filter_string=f"source_run_id = '{run_id}'",
        output_format="list",
    )
    if not logged:
        raise PromotionError(f"MLflow run {run_id} has no logged model to register")
    tags = {
        f"metric.{source}.{key}": f"{value:.6g}"
        for source, values in metrics.items()
        for key, value in values.items()
    }
    version = mlflow.register_model(logged[0].model_uri, name, tags={**tags, "validation_status": "pending"})
    return str(version.version)


def _download(client, name: str, version: str, destination: Path) -> Path:
    """The registered version's files, downloaded the way any consumer of the registry gets them."""
    import mlflow

    return Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=str(destination)))


def _report(
    name: str,
    *,
    candidate: dict[str, Any],
    champion_before,
    champion_metrics: Metrics | None,
    alias: str,
    promoted: bool,
    reasons: list[str],
    validation: dict | None = None,
) -> dict[str, Any]:
    """reports/promotion.json: what was compared, what was decided and why, and who serves now."""
    before = None
    if champion_before is not None:
        before = {
            "version": str(champion_before.version),
            "run_id": champion_before.run_id,
            "metrics_on_this_test_split": champion_metrics,
        }
    return {
        "registered_model": name,
        "candidate": candidate,
        "champion_before": before,
        "alias": alias,
        "promoted": promoted,
        "champion": candidate["version"] if promoted else (before or {}).get("version"),
        "reasons": reasons,
        "infra_validation": validation,
    }
