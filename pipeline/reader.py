"""Stage reader: <prepared>/train, val and test.npz -> the string reader /read uses, through the registry.

Lines are composed from each split's digits (digitops.strings; contributed sources never write them), the
reader is trained on the train lines (digitops.reader), its confidences are calibrated on the validation
lines (a temperature: `digitops.reader.calibrate_reader`) and it is exported to <models>/reader.onnx. It
is scored with ONNX Runtime, as it serves, on the test lines, and so is the registry's `@champion` reader on
the same lines; both are also scored on the test lines the champion kept from its own run (a change to
the composer changes the test lines too). The candidate is registered, and becomes `@champion` only if it
reads at least `reader.min_line_accuracy` of its test lines and, on both sets, at least as many as the
champion (`reader.min_improvement`). <metrics>/reader.json holds the scores and the decision. Everything
goes to its own MLflow run (tag digitops.kind=reader): params, per-epoch loss and validation line
accuracy, the scores, the test lines and the model.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter

import tempfile
import time
from pathlib import Path

import mlflow
import numpy as np

from digitops.config import load_params
from digitops.data.sources import SOURCES
from digitops.errors import run_stage
from digitops.infer.reader import Reader
from digitops.io import load_npz, write_json
from digitops.reader import calibrate_reader, export_reader_onnx, score_lines, train_reader
from digitops.reader_registry import (
    LineScores,
    champion_reader,
    kept_test_lines,
    log_reader,
    log_test_lines,
    register_and_gate,
)
from digitops.strings import ComposedLines, compose_lines, digit_pool
from digitops.tracking import configure, flatten, metric_values, run_tags


def composed(path: Path, count: int, seed: int) -> ComposedLines:
    """`count` lines written with the digits of a split file, contributed sources left out."""
    split = load_npz(path)
    published = np.array([not SOURCES[name].contributed for name in split["sources"]], bool)
    pool = digit_pool(split["images"][published], split["labels"][published], split["sources"][published])
    return compose_lines(pool, count, seed)


def main() -> None:
    params = load_params()
    paths, settings, seed = params.base.paths, params.reader, params.base.seed
    root = Path.cwd()
    split_files = [paths.prepared / f"{name}.npz" for name in ("train", "val", "test")]
    started = time.perf_counter()
    train, val, test = (
        composed(path, count, seed + offset)
        for offset, (path, count) in enumerate(
            zip(split_files, (settings.lines, settings.val_lines, settings.test_lines), strict=True)
        )
    )
    compose_seconds = time.perf_counter() - started
    configure(params.tracking.experiment, root)
    with tempfile.TemporaryDirectory() as scratch, mlflow.start_run(run_name="reader"):
        mlflow.set_tags({**run_tags(root, split_files), "digitops.kind": "reader"})
        mlflow.log_params(flatten({"reader": settings.model_dump(mode="json"), "base": {"seed": seed}}))
        started = time.perf_counter()
        model = train_reader(
            train,
            val,
            epochs=settings.epochs,
            batch_size=settings.batch_size,
            learning_rate=settings.learning_rate,
            seed=seed,
            filters=settings.filters,
            context_filters=settings.context_filters,
            on_epoch=lambda epoch, loss, accuracy: mlflow.log_metrics(
                {"epoch.loss": loss, "epoch.val_line_accuracy": accuracy}, step=epoch
            ),
        )
        train_seconds = time.perf_counter() - started
        calibration = calibrate_reader(model, val, settings.batch_size)
        onnx_path = export_reader_onnx(model, paths.models / "reader.onnx")
        candidate_reader = Reader(onnx_path)
        candidate = score_lines(candidate_reader, test)
        champion = champion_reader(settings.registered_model, Path(scratch))
        champion_score, on_its_lines, comparisons = None, None, []
        if champion:
            champion_model = Reader(champion.model)
            champion_score = score_lines(champion_model, test)
            comparisons.append(
                LineScores(
                    "the candidate's test lines", candidate["line_accuracy"], champion_score["line_accuracy"]
                )
            )
            its_lines = kept_test_lines(champion.run_id, Path(scratch) / "lines")
            if its_lines is not None:  # the lines the champion was judged on
                on_its_lines = {
                    "candidate": score_lines(candidate_reader, its_lines),
                    "champion": score_lines(champion_model, its_lines),
                }
                comparisons.append(
                    LineScores(
                        f"version {champion.version}'s test lines",
                        on_its_lines["candidate"]["line_accuracy"],
                        on_its_lines["champion"]["line_accuracy"],
                    )
                )
        model_uri = log_reader(onnx_path)
        log_test_lines(test)
        decision = register_and_gate(
            model_uri,
            settings.registered_model,
            candidate["line_accuracy"],
            champion.version if champion else None,
            comparisons,
            settings.min_improvement,
            settings.min_line_accuracy,
        )
        report = {
            "candidate": candidate,
            "champion": {"version": champion.version, **champion_score} if champion else None,
            "on_the_champions_test_lines": on_its_lines,
            "decision": {
                "version": decision.version,
                "promoted": decision.promoted,
                "reason": decision.reason,
            },
            "calibration": {name: round(value, 4) for name, value in calibration.items()},
            "compose_seconds": round(compose_seconds, 1),
            "train_seconds": round(train_seconds, 1),
            "parameters": model.count_params(),
        }
        mlflow.log_metrics(
            metric_values({"test": candidate, "calibration": calibration, "train_seconds": train_seconds})
        )
        write_json(paths.metrics / "reader.json", report)
    verdict = "promoted to @champion" if decision.promoted else "not promoted"
    print(f"reader version {decision.version}: {verdict}: {decision.reason}")


if __name__ == "__main__":
    run_stage(main)
