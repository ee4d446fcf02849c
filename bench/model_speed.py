"""What each registered architecture costs to train and to serve, in one run (ratios to the default).

    python bench/model_speed.py                      # every model, about five minutes
    python bench/model_speed.py --models cnn_bn deep3block --rounds 5

Per model, on synthetic digits (the cost does not depend on the weights or the pixels):
- **training**: images/s of `model.fit` at batch 128 (one epoch of --train-images after a warm-up
  epoch), compiled as the train stage compiles it;
- **serving**: images/s of the model exported to ONNX as the train stage exports it, run by ONNX Runtime
  with the service's loader and settings (one intra-op thread, every graph optimisation) at batch 1
  and 64.
The models are measured in turn within each round, --rounds times, and the best round kept, so that the
machine's drift hits all alike. Prints a Markdown table with each figure's ratio to train.model's. Run
it on an otherwise idle machine: it is a timing.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from digitops.config import load_params
from digitops.export import export_onnx
from digitops.infer.classifier import Classifier, load_classifier
from digitops.models import build_model, list_models
from digitops.train import compile_model

SERVING_BATCHES = (1, 64)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", choices=list_models(), default=list_models())
    parser.add_argument("--rounds", type=int, default=3, help="best of this many rounds (default: 3)")
    parser.add_argument("--train-images", type=int, default=1024, help="per training measurement")
    args = parser.parse_args(argv)
    settings = load_params().train
    reference = settings.model if settings.model in args.models else args.models[0]

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.train_images, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, args.train_images)
    models, classifiers = {}, {}
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.models:
            model = build_model(name)
            compile_model(model, settings, steps_per_epoch=math.ceil(args.train_images / settings.batch_size))
            model.fit(images, labels, batch_size=settings.batch_size, epochs=1, verbose=0)  # warm-up
            models[name] = model
            exported = export_onnx(model, Path(scratch) / f"{name}.onnx")  # weights do not change the cost
            classifiers[name] = load_classifier(exported, threads=1, optimization="all")  # the service's

    best: dict[tuple[str, str], float] = {}  # (model, measurement) -> images/s
    for _ in range(args.rounds):
        for name in args.models:
            started = time.perf_counter()
            models[name].fit(images, labels, batch_size=settings.batch_size, epochs=1, verbose=0)
            _keep_best(best, (name, "train"), args.train_images / (time.perf_counter() - started))
            for batch in SERVING_BATCHES:
                _keep_best(best, (name, f"serve {batch}"), _serving_rate(classifiers[name], images[:batch]))

    columns = ["train", *(f"serve {batch}" for batch in SERVING_BATCHES)]
    print("| model | parameters | " + " | ".join(f"{column} img/s" for column in columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for name in args.models:
        cells = [
            f"{best[name, column]:,.0f} ({best[name, column] / best[reference, column]:.2f}x)"
            for column in columns
        ]
        print(f"| {name} | {models[name].count_params():,} | " + " | ".join(cells) + " |")
    print(f"\nRatios are to {reference}'s figure in the same column; best of {args.rounds} rounds.")
    return 0


def _serving_rate(classifier: Classifier, batch: np.ndarray, seconds: float = 0.5) -> float:
    """Images/s of `classifier` on `batch`, run repeatedly for about `seconds` after one warm-up call."""
    classifier(batch)
    calls, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        classifier(batch)
        calls += 1
    return calls * len(batch) / elapsed


def _keep_best(best: dict, key: tuple[str, str], rate: float) -> None:
    best[key] = max(best.get(key, 0.0), rate)


if __name__ == "__main__":
    sys.exit(main())
