"""Promotion: a pure gate (`should_promote`) and the MLflow registry steps around it.

The candidate is registered as a new version of the registered model and tagged with its metrics. It
gets the alias `champion` only if (1) the gate passes against the current champion, re-evaluated on the
candidate's own test split so both are measured on the same digits, and (2) the registered version, loaded
exactly as the service loads it (the ONNX file, ONNX Runtime), gives the Keras model's digit on the whole
test split and its probabilities within `promote.parity_tolerance` on a fixed set of test digits (infra
validation: parity). Otherwise it gets `challenger`, or no alias at all when infra validation fails.
Aliases move last: an error at any earlier step leaves the champion untouched.

When `champion` moves, the new champion's tags say which version it replaced (`previous_champion`), when and
why: `digitops rollback` (digitops.rollback) goes back along them. A version that @champion was rolled back
from (tag `rolled_back_to`), or a new candidate whose ONNX file is byte for byte that version's, gets no alias
here, whatever the gate says: a rerun of the pipeline must not silently undo a rollback (docs/operations.md).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from digitops.config import PromoteParams
from digitops.errors import DigitopsError
from digitops.evaluate import OVERALL, metrics_by_source
from digitops.fingerprint import file_sha256
from digitops.infer.classifier import MODEL_CARD, MODEL_FILE, Classifier, ModelFileError, load_classifier

CHAMPION = "champion"
CHALLENGER = "challenger"

# Registry tags on a model version. Set by promote when @champion moves to it:
PREVIOUS_CHAMPION = "previous_champion"  # the version that held @champion before (absent for the first)
PROMOTED_AT = "promoted.at"  # UTC, ISO 8601
PROMOTED_REASON = "promoted.reason"
MODEL_SHA256 = "model_sha256"  # of its model.onnx, set on every validated version: what serves, by content
# Set by `digitops rollback` on the version it moves @champion away from (ROLLED_BACK_TO: the mark that
# keeps promote from re-promoting it) and on the one it moves to (ROLLED_BACK_FROM); both get the ROLLBACK_*.
ROLLED_BACK_TO = "rolled_back_to"
ROLLED_BACK_FROM = "rolled_back_from"
ROLLBACK_AT = "rollback.at"
ROLLBACK_BY = "rollback.by"
ROLLBACK_REASON = "rollback.reason"

# {"mnist": {"accuracy": ..., "digits": {"1": {"accuracy": ..., "count": ...}, ...}}, ..., "overall": {...}}
Metrics = Mapping[str, Mapping[str, Any]]
# (promote's report, the version's registry tags) -> the version's model card, Markdown (digitops.card)
CardRenderer = Callable[[Mapping[str, Any], Mapping[str, str]], str]


class PromotionError(DigitopsError):
    """The candidate could not be registered or failed infra validation; the champion is unchanged."""


@dataclass(frozen=True)
class Decision:
    promote: bool
    reasons: tuple[str, ...]  # every check made, passed or failed, in words


def should_promote(candidate: Metrics, champion: Metrics | None, policy: PromoteParams) -> Decision:
    """The gate. Never promotes a model that is worse than the champion, overall, on a source or on a digit.

    Checks, on `policy.metric` (higher is better) unless said otherwise:
    - floors: each source named in `policy.floors` (and "overall") reaches its floor; a floor for a source
      the candidate was not measured on is skipped;
    - against a champion (when there is one): overall gains at least `policy.min_improvement`; every source
      the candidate was measured on, with a floor or not, loses at most `policy.max_source_regression`;
      and on every such source, each digit with at least `policy.min_digit_support` test digits loses at
      most `policy.max_digit_regression` of its accuracy (the share of that digit read right, whatever
      `policy.metric` is). A source or digit the champion has no figures for fails: it cannot be compared.

    Args:
        candidate: the candidate's metrics per source and "overall", each with `digits` (evaluate's
            metrics_by_source).
        champion: the champion's metrics on the same test digits, or None when there is no champion.

    Returns:
        The decision, with one reason per check; a failing one names its source (and digit).
    """
    metric = policy.metric
    passed: list[bool] = []
    reasons: list[str] = []

    def check(ok: bool, text: str) -> None:
        passed.append(ok)
        reasons.append(f"{'pass' if ok else 'FAIL'}: {text}")

    def skip(text: str) -> None:
        reasons.append(f"skip: {text}")

    for source, floor in sorted(policy.floors.items()):
        if source not in candidate:
            skip(f"floor for {source}, which is not in this data mix")
            continue
        value = candidate[source][metric]
        check(value >= floor, f"{source} {metric} {value:.4f} vs floor {floor:.4f}")
    if champion is None:
        reasons.append("no champion yet: the floors decide")
        return Decision(promote=all(passed), reasons=tuple(reasons))

    gain = candidate[OVERALL][metric] - champion[OVERALL][metric]
    check(
        gain >= policy.min_improvement,
        f"overall {metric} {candidate[OVERALL][metric]:.4f} vs champion {champion[OVERALL][metric]:.4f}: "
        f"gain {gain:+.4f}, required {policy.min_improvement:+.4f}",
    )
    for source in sorted(set(candidate) - {OVERALL}):
        if source not in champion:
            check(False, f"{source}: the champion was not measured on it, so it cannot be compared")
            continue
        change = candidate[source][metric] - champion[source][metric]
        check(
            change >= -policy.max_source_regression,
            f"{source} {metric} {candidate[source][metric]:.4f} vs champion "
            f"{champion[source][metric]:.4f}: change {change:+.4f}, "
            f"largest drop allowed {policy.max_source_regression:.4f}",
        )
        _digit_checks(source, candidate[source], champion[source], policy, check, skip)
    return Decision(promote=all(passed), reasons=tuple(reasons))


def gate_metrics(
    evaluation: Mapping[str, Any], sources: np.ndarray, contributed: Collection[str] = ()
) -> dict[str, Any]:
    """The gate's view of metrics/eval.json: the figures of each source of the test split, and "overall".

    A contributed source (drawings) is left out: whoever contributes chooses its digits, and a hash anyone
    can compute picks which are in test, so they could manufacture a gain or a regression. eval.json keeps
    their figures apart (under "contributed"), and its "overall" leaves them out.

    Args:
        evaluation: metrics/eval.json (per source, "overall", and summaries the gate does not read).
        sources: (N,) str, the test split's source of each digit.
        contributed: names of the contributed sources (`digitops.data.sources.contributed_sources`).

    Raises:
        PromotionError: eval.json has no figures for a source of the test split, or counts a contributed
            one among them (it is stale).
    """
    counted = [name for name in contributed if name in evaluation]
    if counted:
        raise PromotionError(
            f"metrics/eval.json counts the contributed source(s) {counted} among the figures the gate "
            "compares: run evaluate again"
        )
    names = [*dict.fromkeys(str(name) for name in sources.tolist() if name not in contributed), OVERALL]
    missing = [name for name in names if name not in evaluation]
    if missing:
        raise PromotionError(
            f"metrics/eval.json has no figures for {missing}, which the test split holds: run evaluate again"
        )
    return {name: evaluation[name] for name in names}


def _digit_checks(
    source: str,
    candidate: Mapping[str, Any],
    champion: Mapping[str, Any],
    policy: PromoteParams,
    check: Callable[[bool, str], None],
    skip: Callable[[str], None],
) -> None:
    """The per-digit regression checks of one source: a FAIL per digit that loses too much, naming it;
    one pass for the digits that do not, with the largest change; a skip for digits with too few tests."""
    limit, support = policy.max_digit_regression, policy.min_digit_support
    ours, theirs = candidate.get("digits"), champion.get("digits")
    if ours is None or theirs is None:
        whose = "candidate" if ours is None else "champion"
        check(False, f"{source}: no per-digit figures for the {whose}, so its digits cannot be compared")
        return
    digits = sorted(ours, key=int)
    few = [digit for digit in digits if ours[digit]["count"] < support]
    if few:
        skip(f"{source} digit(s) {', '.join(few)}: under {support} test digits each, too few to compare")
    kept: dict[str, float] = {}  # digit -> change, for those within the limit
    for digit in (digit for digit in digits if ours[digit]["count"] >= support):
        if digit not in theirs:
            check(False, f"{source} digit {digit}: the champion was not measured on it")
            continue
        change = ours[digit]["accuracy"] - theirs[digit]["accuracy"]
        if change < -limit:
            check(
                False,
                f"{source} digit {digit} accuracy {ours[digit]['accuracy']:.4f} vs champion "
                f"{theirs[digit]['accuracy']:.4f} ({ours[digit]['count']} test digits): change "
                f"{change:+.4f}, largest drop allowed {limit:.4f}",
            )
        else:
            kept[digit] = change
    if kept:
        worst = min(kept, key=kept.__getitem__)
        check(
            True,
            f"{source} digit(s) {', '.join(kept)}: none loses more than {limit:.4f} accuracy "
            f"(largest change: digit {worst}, {kept[worst]:+.4f})",
        )


@dataclass(frozen=True)
class ParityReference:
    """The candidate's answers as trained (the Keras model) on the test split: what the served model must
    reproduce, the digit everywhere and the probabilities closely on the known-answer digits."""

    images: np.ndarray  # (N, 28, 28) uint8, the whole test split
    probabilities: np.ndarray  # (N, 10) float32, from the Keras model
    known: np.ndarray  # (K,) indices into images: the known-answer digits


def check_parity(classifier: Classifier, reference: ParityReference, tolerance: float) -> dict[str, Any]:
    """Infra validation: the served model gives the Keras model's digit on every test digit, and its
    probabilities on the known-answer digits within `tolerance`."""
    import onnxruntime

    served = classifier(reference.images)
    mismatches = int((served.argmax(axis=1) != reference.probabilities.argmax(axis=1)).sum())
    differences = np.abs(served - reference.probabilities).max(axis=1) if len(served) else np.zeros(0)
    known_difference = float(differences[reference.known].max()) if len(reference.known) else 0.0
    return {
        "passed": mismatches == 0 and known_difference <= tolerance,
        "runtime": f"onnxruntime {onnxruntime.__version__} ({classifier.provider})",
        "digits": len(served),
        "mismatched_digits": mismatches,
        "known_answer_digits": len(reference.known),
        "max_probability_difference": known_difference,
        "max_probability_difference_all_digits": float(differences.max()) if len(differences) else 0.0,
        "tolerance": tolerance,
    }


def validate_served_model(folder: Path, reference: ParityReference, tolerance: float) -> dict[str, Any]:
    """Load the model in `folder` exactly as the service does and check parity; a file ONNX Runtime
    cannot load fails validation with its reason instead of raising."""
    try:
        classifier = load_classifier(folder)
    except ModelFileError as error:
        return {"passed": False, "error": str(error), "tolerance": tolerance}
    return check_parity(classifier, reference, tolerance)


def promote_candidate(
    run_id: str,
    candidate_metrics: Metrics,
    reference: ParityReference,
    test: Mapping[str, np.ndarray],
    policy: PromoteParams,
    calibration_bins: int,
    card: CardRenderer | None = None,
) -> dict[str, Any]:
    """Register the candidate logged by `run_id`, gate it, validate it, move the aliases; returns the report.

    Args:
        run_id: the MLflow run whose logged model is the candidate (MLflow must already point at its store).
        candidate_metrics: the evaluate stage's metrics per source (and "overall"), as `gate_metrics`
            gives them: the champion is re-evaluated on the test digits of those sources only.
        reference: the candidate's Keras answers on the test split, for infra validation (parity).
        test: the test split (images, labels, sources) on which the champion is re-evaluated.
        card: renders the version's model card from the report and the version's tags; when given, the
            card is logged beside the version's model files (MODEL_CARD) once the decision is made and
            before any alias moves, so that a version never takes @champion without its card.

    Raises:
        PromotionError: the run has no logged model, or the registered version fails infra validation.
    """
    from mlflow import MlflowClient

    client = MlflowClient()
    name = policy.registered_model
    champion = _version_by_alias(client, name, CHAMPION)
    if champion is not None and champion.run_id == run_id:
        report = _report(
            name,
            candidate={"version": str(champion.version), "run_id": run_id, "metrics": candidate_metrics},
            champion_before=champion,
            champion_metrics=None,
            alias=CHAMPION,
            promoted=False,
            reasons=["the candidate is already the champion: nothing to do"],
        )
        _log_card(client, report, card)
        return report

    champion_metrics = None
    if champion is not None:
        # The champion is measured on the digits the candidate's figures cover, so that both "overall"
        # figures are over the same digits (a contributed source's are in neither: gate_metrics).
        gated = np.isin(test["sources"], [source for source in candidate_metrics if source != OVERALL])
        with tempfile.TemporaryDirectory() as scratch:
            probabilities = _served_probabilities(_download(client, name, champion.version, Path(scratch)))
            champion_metrics = metrics_by_source(
                probabilities(test["images"][gated]),
                test["labels"][gated],
                test["sources"][gated],
                calibration_bins,
            )
    decision = should_promote(candidate_metrics, champion_metrics, policy)

    version = _register(client, name, run_id, candidate_metrics)
    with tempfile.TemporaryDirectory() as scratch:
        folder = _download(client, name, version, Path(scratch))
        validation = validate_served_model(folder, reference, policy.parity_tolerance)
        model_sha256 = served_model_sha256(folder)
    client.set_model_version_tag(
        name, version, "validation_status", "passed" if validation["passed"] else "failed"
    )
    if model_sha256 is not None:
        client.set_model_version_tag(name, version, MODEL_SHA256, model_sha256)
    for key in ("mismatched_digits", "max_probability_difference", "runtime"):
        if key in validation:
            client.set_model_version_tag(name, version, f"parity.{key}", str(validation[key]))
    if not validation["passed"]:
        client.set_model_version_tag(name, version, "decision", "rejected")
        raise PromotionError(
            f"{name} version {version} failed infra validation ({_parity_failure(validation)}); "
            "the champion is unchanged"
        )

    rolled_back = _rolled_back_version(client, name, version, model_sha256)
    if rolled_back is not None:  # whatever the gate says: only `digitops rollback --to` brings it back
        alias, reasons = None, [*decision.reasons, _rolled_back_reason(version, rolled_back)]
        client.set_model_version_tag(name, version, "decision", "refused: rolled back")
    else:
        alias, reasons = (CHAMPION if decision.promote else CHALLENGER), list(decision.reasons)
        client.set_model_version_tag(name, version, "decision", alias)
    if alias == CHAMPION:
        _record_promotion(client, name, version, champion)
    report = _report(
        name,
        candidate={"version": version, "run_id": run_id, "metrics": candidate_metrics},
        champion_before=champion,
        champion_metrics=champion_metrics,
        alias=alias,
        promoted=alias == CHAMPION,
        reasons=reasons,
        validation=validation,
    )
    _log_card(client, report, card)
    if alias is not None:
        client.set_registered_model_alias(name, alias, version)  # the only step that changes what serves
    return report


def _log_card(client, report: Mapping[str, Any], card: CardRenderer | None) -> None:
    """Render the model card of the report's version and log it beside the version's model files."""
    if card is None:
        return
    name, version = report["registered_model"], report["candidate"]["version"]
    registered = client.get_model_version(name, version)
    text = card(report, dict(registered.tags))
    # The version's files are its logged model's artifacts (source models:/<logged model id>): the card
    # goes there, where `download_artifacts("models:/<name>/<version>")` brings it along.
    if not registered.source.startswith("models:/"):
        raise PromotionError(f"{name} version {version} comes from {registered.source}, not a logged model")
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / MODEL_CARD
        path.write_text(text, encoding="utf-8")
        client.log_model_artifact(registered.source.removeprefix("models:/"), str(path))


def served_model_sha256(folder: Path) -> str | None:
    """SHA-256 of the ONNX file in a downloaded model version (what serves), or None when it has none."""
    model_file = folder / MODEL_FILE
    return file_sha256(model_file) if model_file.is_file() else None


def utc_now() -> str:
    """The time for a registry tag: UTC, ISO 8601, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def _record_promotion(client, name: str, version: str, champion_before) -> None:
    """Tag `version`, about to take @champion, with the version it replaces, when and why."""
    if champion_before is not None:
        client.set_model_version_tag(name, version, PREVIOUS_CHAMPION, str(champion_before.version))
        why = f"promote: the gate passed against version {champion_before.version}"
    else:
        why = "promote: the first champion, the floors passed"
    client.set_model_version_tag(name, version, PROMOTED_AT, utc_now())
    client.set_model_version_tag(name, version, PROMOTED_REASON, why)


def _rolled_back_version(client, name: str, version: str, model_sha256: str | None):
    """The version @champion was rolled back from that `version` is (same version: promote ran again on
    the same run) or repeats (the same ONNX file from a new run); None when there is none."""
    for other in client.search_model_versions(f"name = '{name}'"):
        if ROLLED_BACK_TO not in other.tags:
            continue
        same_file = model_sha256 is not None and other.tags.get(MODEL_SHA256) == model_sha256
        if str(other.version) == version or same_file:
            return other
    return None


def _rolled_back_reason(version: str, rolled_back) -> str:
    """The FAIL reason of a candidate that a rollback took @champion away from."""
    tags = rolled_back.tags
    which = "it is version" if str(rolled_back.version) == version else "its ONNX file is that of version"
    return (
        f"FAIL: {which} {rolled_back.version}, which @{CHAMPION} was rolled back from on "
        f"{tags.get(ROLLBACK_AT, '?')} by {tags.get(ROLLBACK_BY, '?')} ({tags.get(ROLLBACK_REASON, '?')}): "
        f"it gets no alias; `digitops rollback --to {version}` makes it champion deliberately"
    )


def _parity_failure(validation: Mapping[str, Any]) -> str:
    """Why infra validation failed, in words."""
    if "error" in validation:
        return validation["error"]
    return (
        f"the served model changed {validation['mismatched_digits']} of {validation['digits']} test digits' "
        f"answers; largest probability difference on the {validation['known_answer_digits']} known-answer "
        f"digits {validation['max_probability_difference']:.2e}, tolerance {validation['tolerance']:.0e}"
    )


def _served_probabilities(folder: Path) -> Callable[[np.ndarray], np.ndarray]:
    """The registered model's answers as the service gives them: its ONNX file. A version registered
    before models were exported to ONNX has only its Keras file (data/model.keras): that one is read
    with Keras, so an older champion can still be compared."""
    legacy = folder / "data" / "model.keras"
    if not (folder / MODEL_FILE).is_file() and legacy.is_file():
        import keras

        from digitops.train import predict_probabilities

        model = keras.saving.load_model(legacy, compile=False)
        return lambda images: predict_probabilities(model, images)
    return load_classifier(folder)


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
    tags = {  # the headline figures only: per-digit ones and confusions stay in the run's eval.json
        f"metric.{source}.{key}": f"{value:.6g}"
        for source, values in metrics.items()
        for key, value in values.items()
        if isinstance(value, int | float)
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
    alias: str | None,
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
