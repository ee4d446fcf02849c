"""Stage evaluate: the candidate on <prepared>/test.npz -> <metrics>/eval.json (per source, overall,
robustness), <plots>/eval/{confusion.csv, confusion.png, misclassified.png}. Logs into the MLflow run
that train started."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json

import keras
import mlflow
import pandas as pd

from digitops.config import load_params
from digitops.errors import run_stage
from digitops.evaluate import (
    confusion_counts,
    evaluation_report,
    plot_confusion,
    plot_misclassified,
    robustness,
)
from digitops.io import atomic_dir, load_npz, write_json
from digitops.tracking import flatten
from digitops.train import predict_probabilities


def main() -> None:
    params = load_params()
    paths, settings = params.base.paths, params.evaluate
    run = json.loads((paths.models / "run.json").read_text())
    model = keras.models.load_model(paths.models / "candidate.keras", compile=False)
    test = load_npz(paths.prepared / "test.npz")
    images, labels, sources = test["images"], test["labels"], test["sources"]

    def predict(batch):
        return predict_probabilities(model, batch, settings.batch_size)

    probabilities = predict(images)
    predicted = probabilities.argmax(axis=1)
    robust = robustness(predict, images, labels, settings.robustness, params.base.seed)
    report = evaluation_report(probabilities, labels, sources, robust, settings.calibration_bins)

    plots_dir = paths.plots / "eval"
    with atomic_dir(plots_dir) as out_dir:
        pd.DataFrame({"actual": labels, "predicted": predicted}).to_csv(
            out_dir / "confusion.csv", index=False
        )
        overall = report["overall"]["accuracy"]
        plot_confusion(confusion_counts(labels, predicted), f"test accuracy {overall:.4f}").savefig(
            out_dir / "confusion.png", dpi=120
        )
        plot_misclassified(images, labels, predicted, sources, settings.misclassified_grid).savefig(
            out_dir / "misclassified.png", dpi=120
        )
    mlflow.set_tracking_uri(run["tracking_uri"])
    with mlflow.start_run(run_id=run["run_id"]):
        metrics = flatten({key: value for key, value in report.items() if key != "robustness"}, "test.")
        metrics.update(flatten(report["robustness"], "robustness."))
        mlflow.log_metrics({name: float(value) for name, value in metrics.items()})
        mlflow.log_artifacts(str(plots_dir), artifact_path="eval")
        mlflow.log_artifact(str(paths.plots / "train" / "history.csv"), artifact_path="train")
    write_json(paths.metrics / "eval.json", report)
    print(json.dumps({name: report[name]["accuracy"] for name in report if name != "robustness"}, indent=2))


if __name__ == "__main__":
    run_stage(main)
