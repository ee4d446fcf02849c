"""Train every registered architecture on the same prepared data and print one comparison table.

    python bench/train_zoo.py          # on the data of the last `dvc repro`
    python bench/train_zoo.py --epochs 3 --models small_cnn digitnet --limit 5000
    python bench/train_zoo.py --models cnn_bn --epochs 9 --seeds 1 2   # the same data, other seeds
    python bench/train_zoo.py --epochs 3 --limit 40000 --hold-out bhmsds optdigits-orig

For each model: parameters, epochs run, training time and images/s, validation accuracy (what the model
is chosen on), and test accuracy per source. With --json, each model also gets its curve: validation
accuracy after every epoch against the minutes spent so far (--plot draws it). The table goes to stdout
as Markdown (paste it into docs/results.md). Run it on an otherwise idle machine: it is a timing.

--hold-out leaves the named sources out of training and validation and still tests on them (the
`test_held_out` column pools them): how well each architecture reads writers it has never met.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np

from digitops.config import load_params
from digitops.evaluate import metrics_by_source, pooled_accuracy
from digitops.io import load_npz
from digitops.models import list_models, resolve_model_name
from digitops.sampling import stratified_sample, without_sources
from digitops.train import predict_probabilities, train_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models", nargs="+", default=list_models(), help="names (or old aliases); default: every model"
    )
    parser.add_argument("--epochs", type=int, help="default: train.epochs from params.yaml")
    parser.add_argument("--limit", type=int, help="train on a stratified sample of this many digits")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        help="training seeds (weights and shuffling; the split stays); default: base.seed",
    )
    parser.add_argument(
        "--hold-out", nargs="+", default=[], metavar="SOURCE", help="sources left out of training"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--plot", type=Path, help="draw validation accuracy against minutes to this PNG")
    args = parser.parse_args(argv)
    try:  # before any training, and by canonical name so that the table never lists one model twice
        models = list(dict.fromkeys(resolve_model_name(name) for name in args.models))
    except KeyError as error:
        parser.error(error.args[0])

    params = load_params()
    paths = params.base.paths
    train, val, test = (
        load_npz(path)
        for path in (paths.augmented / "train.npz", paths.prepared / "val.npz", paths.prepared / "test.npz")
    )
    unknown = sorted(set(args.hold_out) - set(np.unique(test["sources"]).tolist()))
    if unknown:
        parser.error(f"--hold-out {unknown}: not a source of the test split")
    train, val = without_sources(train, args.hold_out), without_sources(val, args.hold_out)
    if args.limit:
        keep = stratified_sample(train["labels"], args.limit, np.random.default_rng(0))
        train = {key: value[keep] for key, value in train.items()}
    settings = params.train.model_copy(update={"epochs": args.epochs or params.train.epochs})
    rows = []
    runs = [(name, seed) for name in models for seed in args.seeds or [params.base.seed]]
    for name, seed in runs:
        with tempfile.TemporaryDirectory() as scratch:
            curve = _Curve()
            started = time.perf_counter()
            model, history = train_model(
                (train["images"], train["labels"]),
                (val["images"], val["labels"]),
                settings.model_copy(update={"model": name, "model_kwargs": {}}),
                seed,
                Path(scratch) / "best.keras",
                callbacks=[curve],
                verbose=0,
                train_sources=train["sources"],  # for train.source_mix
            )
            seconds = time.perf_counter() - started
        epochs = len(history.history["loss"])
        probabilities = predict_probabilities(model, test["images"])
        results = metrics_by_source(probabilities, test["labels"], test["sources"], bins=15)
        if args.hold_out:
            predicted = probabilities.argmax(axis=1)
            accuracy = pooled_accuracy(predicted, test["labels"], test["sources"], args.hold_out)
            results["held_out"] = {"accuracy": accuracy}
        rows.append(
            {
                "model": name,
                "seed": seed,
                "parameters": model.count_params(),
                "epochs": epochs,
                "train_minutes": round(seconds / 60, 2),
                "train_images_per_second": round(len(train["labels"]) * epochs / seconds),
                "val_accuracy": round(max(history.history["val_accuracy"]), 4),
                **{f"test_{source}": round(values["accuracy"], 4) for source, values in results.items()},
                "curve": curve.points,
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr)
    columns = [column for column in rows[0] if column != "curve"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row[column]) for column in columns) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    if args.plot:
        _plot_curves(rows, args.plot)
    return 0


class _Curve(keras.callbacks.Callback):
    """Records (minutes since training began, validation accuracy) after every epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.points: list[tuple[float, float]] = []
        self._started = 0.0

    def on_train_begin(self, logs=None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        minutes = (time.perf_counter() - self._started) / 60
        self.points.append((round(minutes, 2), round(float(logs["val_accuracy"]), 4)))


def _plot_curves(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for row in rows:
        minutes, accuracy = zip(*row["curve"], strict=True)
        label = f"{row['model']} (seed {row['seed']})"
        axes.plot(minutes, [100 * value for value in accuracy], marker="o", label=label)
    axes.set(xlabel="training minutes", ylabel="validation accuracy (%)", title="Accuracy per CPU minute")
    axes.set_ylim(bottom=97)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
