"""Stage promote: the candidate (<models>/run.json, <metrics>/eval.json) -> a new version of the MLflow
registered model, aliased `champion` if the gate passes and infra validation holds, else `challenger`;
<reports>/promotion.json says what was compared and why it was decided so."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json

import mlflow
import numpy as np

from digitops.config import load_params
from digitops.errors import run_stage
from digitops.infer.classifier import load_classifier
from digitops.io import load_npz, write_json
from digitops.promote import KnownAnswers, gate_metrics, promote_candidate
from digitops.sampling import stratified_sample


def main() -> None:
    params = load_params()
    paths = params.base.paths
    run = json.loads((paths.models / "run.json").read_text())
    evaluation = json.loads((paths.metrics / "eval.json").read_text())
    test = load_npz(paths.prepared / "test.npz")

    # Known answers: a fixed stratified set of test digits and the candidate's answers to them.
    count = min(params.promote.known_answers, len(test["labels"]))
    chosen = np.sort(stratified_sample(test["labels"], count, np.random.default_rng(params.base.seed)))
    candidate = load_classifier(paths.models / "candidate.keras")
    known = KnownAnswers(test["images"][chosen], candidate(test["images"][chosen]))

    mlflow.set_tracking_uri(run["tracking_uri"])
    report = promote_candidate(
        run["run_id"],
        gate_metrics(evaluation, test["sources"]),
        known,
        test,
        params.promote,
        params.evaluate.calibration_bins,
    )
    write_json(paths.reports / "promotion.json", report)
    print("\n".join(report["reasons"]))
    print(
        f"{report['registered_model']} version {report['candidate']['version']}: alias {report['alias']}; "
        f"champion is version {report['champion']}"
    )


if __name__ == "__main__":
    run_stage(main)
