"""Temperature scaling measured on a trained model, without retraining it.

    make run                                  # once: data/prepared/ and models/candidate.keras
    python bench/calibration.py               # a few minutes of inference on two cores

On a model trained without calibration (as every model before train.calibrate was): fits the temperature
on the validation split as the train stage does (digitops.calibration), then on the test split prints the
expected calibration error and the accuracy before and after, overall and per source. It also applies the
temperature inside a copy of the model and checks that the model's own answers equal the rescaled ones
(the largest probability difference), so the figures are those of the model the pipeline would ship.

Writes `<out>/calibration.json` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from digitops.io import load_npz  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keras", type=Path, default=REPO / "models/candidate.keras")
    parser.add_argument("--prepared", type=Path, default=REPO / "data/prepared")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument("--bins", type=int, default=15, help="evaluate.calibration_bins")
    parser.add_argument("--batch-size", type=int, default=1024)
    args = parser.parse_args(argv)

    import keras

    from digitops.calibration import (
        apply_temperature,
        fit_temperature,
        negative_log_likelihood,
        temper,
    )
    from digitops.evaluate import OVERALL, expected_calibration_error
    from digitops.train import predict_probabilities

    model = keras.models.load_model(args.keras, compile=False)
    val, test = load_npz(args.prepared / "val.npz"), load_npz(args.prepared / "test.npz")
    val_before = predict_probabilities(model, val["images"], args.batch_size)  # (N_val, 10)
    test_before = predict_probabilities(model, test["images"], args.batch_size)  # (N_test, 10)

    temperature = fit_temperature(val_before, val["labels"])
    val_after, test_after = temper(val_before, temperature), temper(test_before, temperature)
    apply_temperature(model, temperature)
    inside = predict_probabilities(model, test["images"], args.batch_size)  # the calibrated model's own

    labels, sources = test["labels"], test["sources"]
    groups = {str(name): sources == name for name in dict.fromkeys(sources.tolist())}
    groups[OVERALL] = np.ones(len(labels), bool)
    rows = {}
    for name, members in groups.items():
        rows[name] = {
            "count": int(members.sum()),
            "ece_before": expected_calibration_error(test_before[members], labels[members], args.bins),
            "ece_after": expected_calibration_error(test_after[members], labels[members], args.bins),
            "accuracy_before": float((test_before[members].argmax(1) == labels[members]).mean()),
            "accuracy_after": float((inside[members].argmax(1) == labels[members]).mean()),
            "mean_confidence_before": float(test_before[members].max(1).mean()),
            "mean_confidence_after": float(test_after[members].max(1).mean()),
        }
    result = {
        "model": str(args.keras),
        "temperature": temperature,
        "bins": args.bins,
        "val_nll_before": negative_log_likelihood(val_before, val["labels"]),
        "val_nll_after": negative_log_likelihood(val_after, val["labels"]),
        "val_ece_before": expected_calibration_error(val_before, val["labels"], args.bins),
        "val_ece_after": expected_calibration_error(val_after, val["labels"], args.bins),
        "inside_model_max_difference": float(np.abs(inside - test_after).max()),
        "argmax_changed": int((inside.argmax(1) != test_before.argmax(1)).sum()),
        "test": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "calibration.json").write_text(json.dumps(result, indent=2) + "\n")

    print(f"T = {temperature:.4f} (fitted on {len(val['labels'])} validation digits)")
    print(
        f"validation: NLL {result['val_nll_before']:.4f} -> {result['val_nll_after']:.4f}, "
        f"ECE {result['val_ece_before']:.4f} -> {result['val_ece_after']:.4f}"
    )
    print(
        f"inside the model: largest probability difference {result['inside_model_max_difference']:.2e}, "
        f"{result['argmax_changed']} digits changed"
    )
    print()
    print(
        "| test source | digits | ECE before | ECE after | mean confidence before → after "
        "| accuracy before → after |"
    )
    print("|---|---:|---:|---:|---|---|")
    for name, row in rows.items():
        print(
            f"| {name} | {row['count']} | {row['ece_before']:.4f} | {row['ece_after']:.4f} "
            f"| {row['mean_confidence_before']:.4f} → {row['mean_confidence_after']:.4f} "
            f"| {row['accuracy_before']:.4f} → {row['accuracy_after']:.4f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
