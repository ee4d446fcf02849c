"""Stage train: <augmented>/train.npz and <prepared>/val.npz -> <models>/candidate.keras, its ONNX export
<models>/candidate.onnx (what serves), run.json, <metrics>/train.json, <plots>/train/history.csv. With
train.calibrate, a temperature fitted on the validation split is applied inside the model before it is saved
(digitops.calibration), and train.json's "calibration" holds it with the validation ECE and NLL before and
after. <models>/reference_profile.json is what the service compares served digits with (digitops.monitoring):
the features of <prepared>/train.npz (as prepared, not augmented) and of the model's validation answers.
Starts the pipeline run's MLflow run: params (calibration.temperature too), the digits each source gives an
epoch (train.source_mix), data fingerprints, per-epoch metrics, the calibration figures and the model (ONNX
with its signature and an input example, the Keras file and the reference profile beside it)."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter

import shutil
import tempfile
import time
from pathlib import Path

import mlflow
import pandas as pd

from digitops.calibration import calibrate_model, temper
from digitops.config import load_params
from digitops.errors import run_stage
from digitops.export import export_onnx
from digitops.io import atomic_path, atomic_write, load_npz, write_json
from digitops.monitoring import PROFILE_FILE, reference_profile
from digitops.tracking import EpochMetrics, configure, flatten, log_candidate_model, run_tags
from digitops.train import mix_counts, predict_probabilities, train_model


def main() -> None:
    params = load_params()
    paths = params.base.paths
    root = Path.cwd()
    train = load_npz(paths.augmented / "train.npz")
    val = load_npz(paths.prepared / "val.npz")
    tracking_uri = configure(params.tracking.experiment, root)
    per_epoch = mix_counts(train["sources"], params.train.source_mix)  # source -> rows drawn each epoch

    with tempfile.TemporaryDirectory() as scratch, mlflow.start_run() as run:
        mlflow.log_params(flatten(params.model_dump(by_alias=True, mode="json")))
        mlflow.log_params(flatten({"mix": {"digits_per_epoch": per_epoch}}))
        mlflow.set_tags(
            run_tags(root, [paths.augmented / "train.npz", *sorted(paths.prepared.glob("*.npz"))])
        )
        started = time.perf_counter()
        model, history = train_model(
            (train["images"], train["labels"]),
            (val["images"], val["labels"]),
            params.train,
            params.base.seed,
            checkpoint_path=Path(scratch) / "best.keras",
            callbacks=[EpochMetrics()],
            verbose=2,
            train_sources=train["sources"],
        )
        seconds = time.perf_counter() - started
        epochs = len(history.history["loss"])
        summary = {
            "best_val_accuracy": max(history.history["val_accuracy"]),
            "epochs": epochs,
            "parameters": model.count_params(),
            "train_seconds": round(seconds, 1),
            "train_images_per_second": round(sum(per_epoch.values()) * epochs / seconds, 1),
        }
        mlflow.log_metrics({f"train.{name}": value for name, value in summary.items()})
        calibration = None
        # On the best epoch's weights, which train_model restored: (N, 10)
        val_probabilities = predict_probabilities(model, val["images"], params.train.batch_size)
        if params.train.calibrate:
            calibration = calibrate_model(
                model, val_probabilities, val["labels"], params.evaluate.calibration_bins
            )
            val_probabilities = temper(val_probabilities, calibration["temperature"])  # as the model now
            mlflow.log_param("calibration.temperature", calibration["temperature"])
            mlflow.log_metrics(
                {f"calibration.{name}": value for name, value in calibration.items() if name != "temperature"}
            )
        keras_file, onnx_file = Path(scratch) / "model.keras", Path(scratch) / "model.onnx"
        model.save(keras_file)
        export_onnx(model, onnx_file)
        mlflow.log_metric("train.onnx_bytes", onnx_file.stat().st_size)
        profile_file = Path(scratch) / PROFILE_FILE  # what served digits are compared with
        write_json(
            profile_file,
            reference_profile(load_npz(paths.prepared / "train.npz")["images"], val_probabilities),
        )
        log_candidate_model(
            onnx_file, keras_file, input_example=val["images"][:4], extra_files=[profile_file]
        )
        built_files = (
            (keras_file, "candidate.keras"),
            (onnx_file, "candidate.onnx"),
            (profile_file, PROFILE_FILE),
        )
        for built, name in built_files:
            with atomic_path(paths.models / name) as tmp_path:
                shutil.copyfile(built, tmp_path)
    write_json(paths.models / "run.json", {"run_id": run.info.run_id, "tracking_uri": tracking_uri})
    write_json(
        paths.metrics / "train.json", {**summary, "digits_per_epoch": per_epoch, "calibration": calibration}
    )
    history_table = pd.DataFrame(history.history).rename_axis("epoch").reset_index()
    history_table["epoch"] += 1
    with atomic_write(paths.plots / "train" / "history.csv", "w") as handle:
        history_table.to_csv(handle, index=False)
    best = summary["best_val_accuracy"]
    print(f"MLflow run {run.info.run_id} in {tracking_uri}: best val accuracy {best:.4f}")


if __name__ == "__main__":
    run_stage(main)
