"""ONNX Runtime's settings for the served model, measured against TensorFlow in one run (ratios).

    make run                                 # once: data/prepared/ and models/candidate.keras
    python bench/onnx_runtime.py             # about two minutes; --rounds 5 for steadier figures

In one process, on the last run's candidate (models/candidate.keras, exported to ONNX as the train stage
exports it):
1. **Parity** on the whole test split: the ONNX model's digit against Keras', per source, and the largest
   probability difference (what the promote stage requires).
2. **int8**: a statically quantised copy (QDQ, per-channel weights, calibrated on validation digits): its
   accuracy per source against float32's, and its speed. `serve.precision: int8` is worth adding only if it
   is faster and loses at most 0.05 points on every source.
3. **Speed**, images/s at batch 1, 16, 64 and 256, each variant measured in turn, `--rounds` times
   (alternating, so that the machine's drift hits all alike): ONNX Runtime at each graph optimisation
   level with one intra-op thread (the service's setting), at `all` with two threads, the int8 copy, and
   TensorFlow's compiled function with one thread (the service before ONNX).

Writes `<out>/onnx_runtime.json` and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

from bench.serving.keras_classifier import KerasClassifier  # noqa: E402
from digitops.infer.classifier import OPTIMIZATION_LEVELS, load_classifier  # noqa: E402
from digitops.io import load_npz  # noqa: E402

BATCHES = (1, 16, 64, 256)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keras", type=Path, default=REPO / "models/candidate.keras")
    parser.add_argument("--prepared", type=Path, default=REPO / "data/prepared")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=0.7, help="per variant, batch size and round")
    parser.add_argument("--calibration", type=int, default=1000, help="validation digits for int8")
    args = parser.parse_args(argv)

    from digitops.export import export_onnx

    # TensorFlow takes its thread settings only before its first operation: the classifier comes first.
    tensorflow = KerasClassifier(args.keras, threads=1)
    test, val = load_npz(args.prepared / "test.npz"), load_npz(args.prepared / "val.npz")
    scratch = Path(tempfile.mkdtemp(prefix="digitops-onnx-"))
    fp32 = export_onnx(tensorflow.model, scratch / "model.onnx")
    int8 = quantize(fp32, scratch / "model-int8.onnx", val["images"][: args.calibration])
    reference = tensorflow(test["images"])

    variants = {
        f"onnx {level}, 1 thread": load_classifier(fp32, 1, optimization=level)
        for level in OPTIMIZATION_LEVELS
    }
    variants["onnx all, 2 threads"] = load_classifier(fp32, 2)
    variants["onnx int8 all, 1 thread"] = load_classifier(int8, 1)
    variants["tensorflow, 1 thread"] = tensorflow  # the service's setting before ONNX

    figures = {
        "model": str(args.keras),
        "onnx_bytes": {"fp32": fp32.stat().st_size, "int8": int8.stat().st_size},
        "parity": parity(variants["onnx all, 1 thread"](test["images"]), reference, test),
        "accuracy": {
            name: accuracy(variants[name](test["images"]), test)
            for name in ("tensorflow, 1 thread", "onnx all, 1 thread", "onnx int8 all, 1 thread")
        },
        "images_per_s": speed(variants, test["images"], args.rounds, args.seconds),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "onnx_runtime.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(summary(figures))
    return 0


def quantize(model: Path, out: Path, calibration: np.ndarray) -> Path:
    """Static int8 quantisation (QDQ, per-channel weights), calibrated on `calibration` digits."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Digits(CalibrationDataReader):
        def __init__(self) -> None:
            name = load_classifier(model).session.get_inputs()[0].name
            self.batches = iter({name: calibration[i : i + 100]} for i in range(0, len(calibration), 100))

        def get_next(self):
            return next(self.batches, None)

    quantize_static(
        str(model),
        str(out),
        Digits(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    return out


def parity(served: np.ndarray, reference: np.ndarray, test: dict) -> dict:
    differ = served.argmax(1) != reference.argmax(1)
    return {
        "digits": len(served),
        "mismatched_digits": int(differ.sum()),
        "mismatched_by_source": {
            str(source): int(differ[test["sources"] == source].sum()) for source in np.unique(test["sources"])
        },
        "max_probability_difference": float(np.abs(served - reference).max()),
    }


def accuracy(probabilities: np.ndarray, test: dict) -> dict[str, float]:
    right = probabilities.argmax(1) == test["labels"]
    figures = {
        str(source): float(right[test["sources"] == source].mean()) for source in np.unique(test["sources"])
    }
    return {**figures, "overall": float(right.mean())}


def speed(variants: dict, images: np.ndarray, rounds: int, seconds: float) -> dict[str, dict[str, float]]:
    """Best images/s over the rounds, per variant and batch size, the variants taking turns."""
    best: dict[str, dict[str, float]] = {name: {} for name in variants}
    for _ in range(rounds):
        for batch in BATCHES:
            x = np.ascontiguousarray(images[:batch])
            for name, model in variants.items():
                model(x)
                calls, started = 0, time.perf_counter()
                while time.perf_counter() - started < seconds:
                    model(x)
                    calls += 1
                rate = batch * calls / (time.perf_counter() - started)
                best[name][str(batch)] = round(max(best[name].get(str(batch), 0.0), rate), 1)
    return best


def summary(figures: dict) -> str:
    rates = figures["images_per_s"]
    base = rates["tensorflow, 1 thread"]
    lines = [
        "| variant | " + " | ".join(f"batch {b}" for b in BATCHES) + " |",
        "|---" * (len(BATCHES) + 1) + "|",
    ]
    for name, row in rates.items():
        cells = [f"{row[str(b)]:,.0f} ({row[str(b)] / base[str(b)]:.2f}x)" for b in BATCHES]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    accuracy_rows = figures["accuracy"]
    sources = list(next(iter(accuracy_rows.values())))
    lines += ["", "| accuracy | " + " | ".join(sources) + " |", "|---" * (len(sources) + 1) + "|"]
    for name, row in accuracy_rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[s]:.4%}" for s in sources) + " |")
    p = figures["parity"]
    lines += [
        "",
        f"Parity (ONNX fp32 vs Keras, whole test split): {p['mismatched_digits']} of {p['digits']} digits "
        f"differ, largest probability difference {p['max_probability_difference']:.1e}.",
        f"ONNX file: fp32 {figures['onnx_bytes']['fp32'] / 1e6:.2f} MB, "
        f"int8 {figures['onnx_bytes']['int8'] / 1e6:.2f} MB.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
