"""Stage promote: the candidate (<models>/run.json, <metrics>/eval.json) -> a new version of the MLflow
registered model, aliased `champion` if the gate passes and infra validation holds (the registered ONNX
model, run as the service runs it, answers as <models>/candidate.keras does), else `challenger`;
<reports>/promotion.json says what was compared and why it was decided so. The version's model card
(digitops.card), rendered from the pipeline's outputs and that decision, is logged with the version and
written to <reports>/model_card.md; the serving benchmark in it is docs/serve-benchmark.json's, when that
file exists (it is not a DVC dependency: a new benchmark shows at the next promote)."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json
from pathlib import Path

import keras
import mlflow
import numpy as np

from digitops.card import read_card_inputs, render_card
from digitops.config import load_params
from digitops.data.sources import contributed_sources
from digitops.errors import run_stage
from digitops.io import load_npz, write_json, write_text
from digitops.promote import ParityReference, gate_metrics, promote_candidate
from digitops.sampling import stratified_sample
from digitops.train import predict_probabilities

SERVE_BENCHMARK = Path("docs/serve-benchmark.json")


def main() -> None:
    params = load_params()
    paths = params.base.paths
    run = json.loads((paths.models / "run.json").read_text())
    evaluation = json.loads((paths.metrics / "eval.json").read_text())
    test = load_npz(paths.prepared / "test.npz")

    # The parity reference: the Keras model's answers on the whole test split; on the known answers (a fixed
    # stratified set of test digits) the probabilities must match too, not only the digit.
    count = min(params.promote.known_answers, len(test["labels"]))
    known = np.sort(stratified_sample(test["labels"], count, np.random.default_rng(params.base.seed)))
    candidate = keras.saving.load_model(paths.models / "candidate.keras", compile=False)
    reference = ParityReference(test["images"], predict_probabilities(candidate, test["images"]), known)

    measured = read_card_inputs(paths.metrics, paths.reports, paths.prepared, SERVE_BENCHMARK)
    cards: list[str] = []

    def card(decision, tags) -> str:  # called by promote_candidate once it has decided
        cards.append(render_card(measured, decision, tags))
        return cards[-1]

    mlflow.set_tracking_uri(run["tracking_uri"])
    report = promote_candidate(
        run["run_id"],
        gate_metrics(evaluation, test["sources"], contributed_sources(test["sources"].tolist())),
        reference,
        test,
        params.promote,
        params.evaluate.calibration_bins,
        card,
    )
    write_json(paths.reports / "promotion.json", report)
    write_text(paths.reports / "model_card.md", cards[-1])
    print("\n".join(report["reasons"]))
    alias = f"alias {report['alias']}" if report["alias"] else "no alias"
    print(
        f"{report['registered_model']} version {report['candidate']['version']}: {alias}; "
        f"champion is version {report['champion']}"
    )


if __name__ == "__main__":
    run_stage(main)
