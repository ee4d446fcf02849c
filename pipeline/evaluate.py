"""Stage evaluate: the candidate on <prepared>/test.npz -> <metrics>/eval.json (per source and overall,
each with per-digit figures and top confusions; real_world; contributed sources apart; robustness;
calibration: the ECE before and after the temperature in <metrics>/train.json), <plots>/eval/{confusion.csv,
confusion.png, misclassified.png, reliability.csv, reliability.png}. Logs into the MLflow run that train
started: the numbers as metrics (test.<source>.accuracy, test.<source>.digits.<d>.accuracy,
real_world.accuracy, contributed.<source>.accuracy, robustness.<name>, calibration.<source>.ece_before), the
plots, and eval.json itself as the artifact metrics/eval.json (which holds the confusions). Contributed
digits (drawings) count in neither overall, the confusion matrix, robustness nor calibration: what the gate
compares is out of a contributor's reach."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json

import keras
import mlflow
import numpy as np
import pandas as pd

from digitops.calibration import calibration_report, plot_reliability, reliability_table, uncalibrated
from digitops.config import load_params
from digitops.data.sources import contributed_sources
from digitops.errors import run_stage
from digitops.evaluate import (
    CALIBRATION,
    CONTRIBUTED,
    OVERALL,
    REAL_WORLD,
    ROBUSTNESS,
    SUMMARIES,
    confusion_counts,
    evaluation_report,
    plot_confusion,
    plot_misclassified,
    robustness,
)
from digitops.io import atomic_dir, load_npz, write_json
from digitops.tracking import metric_values
from digitops.train import predict_probabilities


def main() -> None:
    params = load_params()
    paths, settings = params.base.paths, params.evaluate
    run = json.loads((paths.models / "run.json").read_text())
    model = keras.models.load_model(paths.models / "candidate.keras", compile=False)
    test = load_npz(paths.prepared / "test.npz")
    # The model already applies its temperature (train.calibrate); train.json says which, to undo it.
    calibrated = json.loads((paths.metrics / "train.json").read_text()).get("calibration")
    temperature = None if calibrated is None else calibrated["temperature"]
    images, labels, sources = test["images"], test["labels"], test["sources"]

    def predict(batch):
        return predict_probabilities(model, batch, settings.batch_size)

    contributed = contributed_sources(sources.tolist())
    gated = ~np.isin(sources, contributed)  # (N,) bool: the digits the gate compares
    probabilities = predict(images)
    predicted = probabilities.argmax(axis=1)
    robust = robustness(predict, images[gated], labels[gated], settings.robustness, params.base.seed)
    report = evaluation_report(
        probabilities,
        labels,
        sources,
        robust,
        settings.calibration_bins,
        settings.lab_sources,
        settings.top_confusions,
        contributed,
    )
    bins = settings.calibration_bins
    report[CALIBRATION] = calibration_report(
        probabilities[gated], labels[gated], sources[gated], temperature, bins
    )
    before = uncalibrated(probabilities[gated], temperature)

    plots_dir = paths.plots / "eval"
    with atomic_dir(plots_dir) as out_dir:
        pd.DataFrame({"actual": labels[gated], "predicted": predicted[gated]}).to_csv(
            out_dir / "confusion.csv", index=False
        )
        overall = report[OVERALL]["accuracy"]
        counts = confusion_counts(labels[gated], predicted[gated])
        plot_confusion(counts, f"test accuracy {overall:.4f}").savefig(out_dir / "confusion.png", dpi=120)
        plot_misclassified(images, labels, predicted, sources, settings.misclassified_grid).savefig(
            out_dir / "misclassified.png", dpi=120
        )
        table = reliability_table(before, probabilities[gated], labels[gated], bins)
        table.to_csv(out_dir / "reliability.csv", index=False)
        plot_reliability(before, probabilities[gated], labels[gated], bins, temperature).savefig(
            out_dir / "reliability.png", dpi=120
        )
    mlflow.set_tracking_uri(run["tracking_uri"])
    with mlflow.start_run(run_id=run["run_id"]):
        figures = {key: value for key, value in report.items() if key not in SUMMARIES}
        metrics = metric_values(figures, "test.")
        metrics.update(metric_values(report[ROBUSTNESS], f"{ROBUSTNESS}."))
        metrics.update(metric_values(report[CALIBRATION], f"{CALIBRATION}."))
        metrics.update(metric_values(report[CONTRIBUTED] or {}, f"{CONTRIBUTED}."))
        if report[REAL_WORLD] is not None:
            metrics.update(metric_values(report[REAL_WORLD], f"{REAL_WORLD}."))
            mlflow.set_tag(f"{REAL_WORLD}.worst_source", report[REAL_WORLD]["worst_source"])
        mlflow.log_metrics(metrics)
        mlflow.log_dict(report, "metrics/eval.json")
        mlflow.log_artifacts(str(plots_dir), artifact_path="eval")
        mlflow.log_artifact(str(paths.plots / "train" / "history.csv"), artifact_path="train")
    write_json(paths.metrics / "eval.json", report)
    summary = {name: figures["accuracy"] for name, figures in report.items() if name not in SUMMARIES}
    if report[REAL_WORLD] is not None:
        summary[REAL_WORLD] = report[REAL_WORLD]["accuracy"]
    for name, figures in (report[CONTRIBUTED] or {}).items():
        summary[f"{CONTRIBUTED}.{name}"] = figures["accuracy"]
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    run_stage(main)
