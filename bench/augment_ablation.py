"""Which real-world augmentation helps? One short proxy training per variant, one table.

    python bench/augment_ablation.py --epochs 2 --limit 20000
    python bench/augment_ablation.py --init-model models/candidate.keras --epochs 2 --learning-rate 0.0005
    python bench/augment_ablation.py --variants thinner binarize --p 0.3 --json ablation.json
    python bench/augment_ablation.py --hold-out bhmsds optdigits-orig   # writers never trained on
    python bench/augment_ablation.py --variants thinner+thicker --p 0.25   # several at once

Reads the prepared data of the last `dvc repro` (data/prepared/train.npz and test.npz, with their
`sources`; the stages up to split are enough). The variants are the baseline (params.yaml's `augment`
as it is), then the baseline with one real-world transform switched on at probability --p (or several,
joined by +, each at --p). Each variant
trains the same proxy: the named model (train.model by default), from scratch or fine-tuned from
--init-model, for --epochs epochs on the same stratified subset of --limit training digits (by source
and label) plus `augment.copies` augmented copies of each, with the same seed. It prints, per variant,
the test accuracy per source and overall, and for every variant but the baseline the change against it
in points. --json writes the figures.

--hold-out leaves the named sources out of training and still tests on them: their writers are then
writers the model has never met, as the writers of real-world handwriting are, and the `held_out` column
pools them. A transform that helps there helps a model generalise to new hands and conditions; one that
helps only the sources trained on may just fit their writers.

A proxy ranks the variants; it does not give their final accuracy. The weights of the last epoch are
evaluated (no early stopping), so every variant gets the same budget. Turning a transform on also
changes the random draws of the transforms after it, so differences of a few hundredths of a point
are noise: confirm a winner with another --seed. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import keras
import numpy as np

from digitops.augment import augment
from digitops.config import REAL_WORLD_AUGMENTATIONS as REAL_WORLD
from digitops.config import AugmentParams, load_params
from digitops.evaluate import metrics_by_source, pooled_accuracy
from digitops.io import load_npz, write_json
from digitops.models import build_model, list_models
from digitops.sampling import stratified_sample, without_sources
from digitops.train import compile_model, make_dataset, predict_probabilities


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help=f"one of {list_models()}; default: train.model")
    parser.add_argument("--init-model", type=Path, help="fine-tune this .keras model instead of a new one")
    parser.add_argument("--epochs", type=int, default=2, help="default: 2")
    parser.add_argument("--limit", type=int, default=20000, help="training digits (default: 20000)")
    parser.add_argument("--p", type=float, default=0.5, help="probability of the one transform switched on")
    parser.add_argument(
        "--variants", nargs="+", default=list(REAL_WORLD), help=f"of {', '.join(REAL_WORLD)}, or a+b"
    )
    parser.add_argument("--learning-rate", type=float, help="default: train.learning_rate")
    parser.add_argument(
        "--seed", type=int, help="subset, augmentation, weights, shuffling; default: base.seed"
    )
    parser.add_argument(
        "--hold-out", nargs="+", default=[], metavar="SOURCE", help="sources left out of training"
    )
    parser.add_argument("--data", type=Path, help="the prepared folder; default: base.paths.prepared")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if not 0 <= args.p <= 1 or args.epochs < 1 or args.limit < 10:
        parser.error("--p must lie in [0, 1], --epochs be at least 1 and --limit at least 10")
    for variant in args.variants:
        if not set(variant.split("+")) <= set(REAL_WORLD):
            parser.error(f"--variants {variant}: each part must be one of {', '.join(REAL_WORLD)}")
    if args.init_model and not args.init_model.is_file():
        parser.error(f"--init-model {args.init_model}: no such file")
    if args.model and args.model not in list_models():
        parser.error(f"--model {args.model}: not one of {list_models()}")

    params = load_params()
    seed = params.base.seed if args.seed is None else args.seed
    folder = args.data or params.base.paths.prepared
    train, test = load_npz(folder / "train.npz"), load_npz(folder / "test.npz")
    unknown = sorted(set(args.hold_out) - set(np.unique(test["sources"]).tolist()))
    if unknown:
        parser.error(f"--hold-out {unknown}: not a source of {folder / 'test.npz'}")
    train = without_sources(train, args.hold_out)
    strata = np.char.add(train["sources"].astype(str), train["labels"].astype(str))
    keep = stratified_sample(strata, args.limit, np.random.default_rng(seed))
    images, labels = train["images"][keep], train["labels"][keep]  # (M, 28, 28) uint8, (M,)
    model_name = args.model or params.train.model
    settings = params.train.model_copy(
        update={
            "model": model_name,
            "model_kwargs": params.train.model_kwargs if model_name == params.train.model else {},
            "epochs": args.epochs,
            "learning_rate": args.learning_rate or params.train.learning_rate,
        }
    )
    print(
        f"{len(labels)} training digits (+ {params.augment.copies} augmented copies each), "
        f"{len(test['labels'])} test digits; {model_name}"
        + (f" from {args.init_model}" if args.init_model else "")
        + f", {args.epochs} epoch(s), seed {seed}"
        + (f"; held out of training: {', '.join(args.hold_out)}" if args.hold_out else ""),
        file=sys.stderr,
    )

    rows = []
    for name in [None, *args.variants]:
        augment_params = _switched_on(params.augment, name, args.p)
        started = time.perf_counter()
        augmented = augment(images, augment_params, seed, augment_params.workers or None)
        train_images = np.concatenate([images, augmented])  # the originals, then the copies, as in the stage
        train_labels = np.tile(labels, 1 + augment_params.copies)
        model = _train(train_images, train_labels, settings, seed, args.init_model)
        probabilities = predict_probabilities(model, test["images"])
        results = metrics_by_source(probabilities, test["labels"], test["sources"], bins=15)
        if args.hold_out:
            predicted = probabilities.argmax(axis=1)
            accuracy = pooled_accuracy(predicted, test["labels"], test["sources"], args.hold_out)
            results["held_out"] = {"accuracy": accuracy}
        rows.append(
            {
                "variant": name or "baseline",
                "p": args.p if name else None,
                "minutes": round((time.perf_counter() - started) / 60, 2),
                "accuracy": {source: round(values["accuracy"], 5) for source, values in results.items()},
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr)
        keras.backend.clear_session()  # a fresh graph per variant: memory stays flat
    baseline = rows[0]["accuracy"]
    for row in rows:
        row["change_points"] = {
            source: round(100 * (accuracy - baseline[source]), 2)
            for source, accuracy in row["accuracy"].items()
        }
    print(format_table(rows))
    if args.json:
        write_json(args.json, rows)
    return 0


def _switched_on(base: AugmentParams, variant: str | None, p: float) -> AugmentParams:
    """The baseline augmentation, with the transforms of `variant` (if any: `a` or `a+b`) at probability p."""
    if variant is None:
        return base
    names = variant.split("+")
    return base.model_copy(update={name: getattr(base, name).model_copy(update={"p": p}) for name in names})


def _train(
    images: np.ndarray, labels: np.ndarray, settings, seed: int, init_model: Path | None
) -> keras.Model:
    """The proxy: a new `settings.model`, or `init_model` fine-tuned, trained for `settings.epochs`."""
    keras.utils.set_random_seed(seed)  # the same initial weights and batch order for every variant
    model = (
        keras.saving.load_model(init_model)
        if init_model
        else build_model(settings.model, **settings.model_kwargs)
    )
    compile_model(model, settings, steps_per_epoch=math.ceil(len(labels) / settings.batch_size))
    model.fit(
        make_dataset(images, labels, settings.batch_size, shuffle=True, seed=seed),
        epochs=settings.epochs,
        shuffle=False,  # the dataset shuffles itself, seeded
        verbose=0,
    )
    return model


def format_table(rows: list[dict]) -> str:
    """Markdown: one row per variant, test accuracy (%) per source and overall; each variant but the
    baseline shows its change against the baseline in points, e.g. `99.12 (+0.08)`."""
    sources = list(rows[0]["accuracy"])
    lines = [
        "| variant | p | " + " | ".join(sources) + " | minutes |",
        "|---|---|" + "---|" * len(sources) + "---|",
    ]
    for row in rows:
        cells = [
            f"{100 * row['accuracy'][source]:.2f}"
            + (f" ({row['change_points'][source]:+.2f})" if row["p"] is not None else "")
            for source in sources
        ]
        p = "" if row["p"] is None else f"{row['p']:g}"
        lines.append(f"| {row['variant']} | {p} | " + " | ".join(cells) + f" | {row['minutes']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
