"""Read synthetic photos of handwritten numbers with `read_digits` and a trained model; print the figures.

    python bench/read_photos.py                          # models/candidate.onnx, 300 photos
    python bench/read_photos.py --model /tmp/m.onnx --photos 200 --json out.json \\
        --examples out.png
    python bench/read_photos.py --paper-edge 0.25   # a dark desk beyond the paper in 1 in 4
    python bench/read_photos.py --conditions all --photos 200 --json conditions.json   # the harder one

Each photo holds one number of 3-8 digits (one photo in five: two lines), the digits drawn at random from
the MNIST and USPS *test* sets (never seen in training), written in a random pen colour on textured paper,
lit by a gradient and a shadow, rotated, blurred and JPEG-compressed (`bench.photos`). Figures:
- digit accuracy: digits read right in their position, over all true digits;
- number accuracy: photos whose whole text is right;
- detection: photos with the wrong number of digits found, missing and extra digits (a segmentation
  error); and the digit accuracy on the photos where the count is right (the classifier's share);
- the classifier's accuracy on the same digits as the datasets give them (normalised, no photo);
- time per photo: `read_digits` (segmentation, normalisation and one classifier call), median and p95;
- the whole text's `confidence` against whether it was right: its calibration error (`string_ece`), and
  the share of photos read with at least `serve.low_confidence` (`sure_share`) and how many of those are
  right (`sure_accuracy`): what a caller who asks a person below that line gets.

`--digit-px` scales every photo down until its digits are that many pixels tall, as a coarse scan of a
form writes them (the bench draws digits 24-110 px tall).

`--conditions` (a comma-separated list of `CONDITIONS`, or `all`) runs the harder benchmark
instead: `--photos` photos per condition, each one line of 3-8 digits written by one hand (all digits of a
photo from one source: the MNIST, USPS, optdigits-orig `.windep` or bhmsds test digits, the last two
continental in style), on a plain base (rotation within 1 degree, JPEG quality 80-95) with that condition
alone; `mixed` turns each condition listed before it on with even odds per photo (`bilevel`, a
black-and-white scan, came later and is left out of it). Per condition it prints digit accuracy (as
above), whole-string accuracy, the character error rate (edit distance over the true length, summed over
photos) and the time per photo, and keeps a few failures (written, true and read text) in the JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "src")]  # bench.photos, and digitops without installing

from bench.photos import Conditions, SyntheticPhoto, make_photo  # noqa: E402
from digitops.config import load_params  # noqa: E402
from digitops.data import bhmsds  # noqa: E402
from digitops.data.drawings import split_by_hash  # noqa: E402
from digitops.data.idx import read_idx_digits  # noqa: E402
from digitops.data.optdigits import read_optdigits  # noqa: E402
from digitops.data.usps import read_usps  # noqa: E402
from digitops.evaluate import calibration_error  # noqa: E402
from digitops.fingerprint import image_hashes  # noqa: E402
from digitops.infer.classifier import Classifier, load_classifier  # noqa: E402
from digitops.infer.reader import Reader, load_reader  # noqa: E402
from digitops.infer.segment import ReadResult, read_digits  # noqa: E402
from digitops.io import atomic_path, atomic_write  # noqa: E402
from digitops.preprocess import normalize_digits  # noqa: E402
from digitops.strings import edit_distance  # noqa: E402

# Each condition alone on the plain base, then the ones before it mixed (`_condition_photo`).
CONDITIONS = (
    "plain",
    "tight_crop",
    "separators",
    "underline",
    "ruled",
    "boxed",
    "pattern",
    "touching",
    "pressure",
    "rotation",
    "perspective",
    "jpeg",
    "mixed",
    "bilevel",  # after mixed and left out of it: mixed's photos stay those of the figures before it
)
MIXED = CONDITIONS[: CONDITIONS.index("mixed")]  # what `mixed` turns on, each with even odds
FAILURES_KEPT = 5  # failures per condition kept in the JSON, to see what segmentation does wrong
CONFIDENCE_BINS = 10  # bins of the whole text's calibration error


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "models" / "candidate.onnx")
    parser.add_argument(
        "--reader", type=Path, help="a string reader's .onnx (models/reader.onnx): read lines whole with it"
    )
    parser.add_argument("--datasets", type=Path, default=REPO_ROOT.parent / "shared" / "datasets")
    parser.add_argument("--photos", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--paper-edge",
        type=float,
        default=0.0,
        help="fraction of photos where a dark desk shows beyond the paper",
    )
    parser.add_argument(
        "--digit-px",
        type=float,
        help="downscale each photo until its digits are this many pixels tall (a coarse scan)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--examples", type=Path, help="save a grid of photos with their boxes and readings")
    parser.add_argument(
        "--conditions",
        help=f"the harder benchmark for these conditions (comma-separated or all): {', '.join(CONDITIONS)}",
    )
    args = parser.parse_args(argv)
    sure_at = load_params(REPO_ROOT / "params.yaml").serve.low_confidence  # below it, ask a person
    if args.conditions:
        names = CONDITIONS if args.conditions == "all" else tuple(args.conditions.split(","))
        unknown = [name for name in names if name not in CONDITIONS]
        if unknown:
            parser.error(f"unknown condition {unknown[0]!r}; known: {', '.join(CONDITIONS)}")
        return _run_conditions(args, names, sure_at)

    pool = _test_digits(args.datasets)
    rng = np.random.default_rng(args.seed)
    photos, sources = zip(
        *(
            _random_photo(pool, rng, paper_edge=index < args.paper_edge * args.photos)
            for index in range(args.photos)
        ),
        strict=True,
    )
    photos = [_downscaled(photo, args.digit_px) for photo in photos]
    classifier, reader = _models(args)

    results, seconds = [], []
    for photo in photos:
        started = time.perf_counter()
        results.append(read_digits(photo.image, classifier, reader))
        seconds.append(time.perf_counter() - started)
    figures = {
        "model": str(args.model),
        "reader": str(args.reader) if args.reader else None,
        "photos": len(photos),
        "seed": args.seed,
        "paper_edge": args.paper_edge,
    }
    figures |= _score(photos, results, sure_at)
    # The same digits as the dataset gives them (normalised, no photo): what the classifier alone gets.
    source_digits = normalize_digits([image for photo_sources in sources for image in photo_sources])
    true_labels = np.array([int(d) for photo in photos for line in photo.lines for d in line])
    figures["classifier_accuracy_on_source_digits"] = round(
        float(np.mean(classifier(source_digits).argmax(axis=1) == true_labels)), 4
    )
    figures["seconds_per_photo"] = {
        "mean": round(float(np.mean(seconds)), 4),
        "median": round(float(np.median(seconds)), 4),
        "p95": round(float(np.percentile(seconds, 95)), 4),
    }
    figures["mean_photo_pixels"] = round(float(np.mean([p.image.width * p.image.height for p in photos])))
    print(json.dumps(figures, indent=2))
    if args.json:
        with atomic_write(args.json, "w") as handle:
            json.dump(figures, handle, indent=2)
    if args.examples:
        with atomic_path(args.examples) as path:
            _example_grid(list(photos[:12]), results[:12]).save(path, format="PNG")
    return 0


def _run_conditions(args: argparse.Namespace, names: tuple[str, ...], sure_at: float) -> int:
    """The harder benchmark: `args.photos` photos per condition, read and scored; a table on stdout."""
    pools = _condition_pools(args.datasets)
    classifier, reader = _models(args)
    figures = {
        "model": str(args.model),
        "reader": str(args.reader) if args.reader else None,
        "photos_per_condition": args.photos,
        "seed": args.seed,
    }
    figures["sources"] = {name: len(pool) for name, pool in pools.items()}
    rows, examples = {}, []
    for number, name in enumerate(CONDITIONS):
        if name not in names:
            continue
        rng = np.random.default_rng([args.seed, number])  # each condition reproducible on its own
        photos = [_condition_photo(list(pools.values()), name, rng) for _ in range(args.photos)]
        photos = [_downscaled(photo, args.digit_px) for photo in photos]
        results, seconds = [], []
        for photo in photos:
            started = time.perf_counter()
            results.append(read_digits(photo.image, classifier, reader))
            seconds.append(time.perf_counter() - started)
        row = _score(photos, results, sure_at)
        row["seconds_per_photo"] = {
            "median": round(float(np.median(seconds)), 4),
            "p95": round(float(np.percentile(seconds, 95)), 4),
        }
        row["failures"] = [
            {"written": " / ".join(photo.written), "truth": _truth(photo), "read": result.text}
            for photo, result in zip(photos, results, strict=True)
            if result.text != _truth(photo)
        ][:FAILURES_KEPT]
        rows[name] = row
        examples.extend(zip(photos[:2], results[:2], strict=True))
        print(_table_row(name, row), flush=True)
    figures["conditions"] = rows
    if args.json:
        with atomic_write(args.json, "w") as handle:
            json.dump(figures, handle, indent=2)
    if args.examples:
        with atomic_path(args.examples) as path:
            photos, results = zip(*examples, strict=True)
            _example_grid(list(photos), list(results)).save(path, format="PNG")
    return 0


def _models(args: argparse.Namespace) -> tuple[Classifier, Reader | None]:
    """The classifier, and the string reader when one is given; both warmed up."""
    classifier = load_classifier(args.model)
    classifier.warm_up()
    reader = load_reader(args.reader) if args.reader else None
    if reader:
        reader.warm_up()
    return classifier, reader


def _table_row(name: str, row: dict) -> str:
    """One markdown table row: condition, digits, whole strings, CER, wrong counts, the share read sure
    (and right of those), median and p95 time."""
    seconds = row["seconds_per_photo"]
    sure_right = "-" if row["sure_accuracy"] is None else f"{row['sure_accuracy']:.1%}"
    return (
        f"| {name} | {row['digit_accuracy']:.2%} | {row['number_accuracy']:.1%} | "
        f"{row['character_error_rate']:.3f} | {row['photos_with_wrong_count']} "
        f"({row['missing_digits']} missing, {row['extra_digits']} extra) | "
        f"{row['sure_share']:.0%} ({sure_right}) | "
        f"{seconds['median'] * 1000:.0f} ms | {seconds['p95'] * 1000:.0f} ms |"
    )


def _condition_pools(datasets: Path) -> dict[str, list[tuple[np.ndarray, int]]]:
    """Test digits per source, (image white-on-black uint8, label): MNIST, USPS, optdigits-orig `.windep`
    (13 writers none of the training files hold) and bhmsds's test share.

    bhmsds has no official split: ingest sends a digit to test by the content hash of its normalised image
    (params.yaml `ingest.hash_test_fraction`), so the same digits are picked here, never a training one.
    """
    mnist_images, mnist_labels = read_idx_digits(
        datasets / "mnist" / "t10k-images-idx3-ubyte.gz", datasets / "mnist" / "t10k-labels-idx1-ubyte.gz"
    )
    usps_images, usps_labels = read_usps(datasets / "usps" / "zip.test.gz")
    opt_images, opt_labels = read_optdigits(datasets / "optdigits-orig" / "optdigits-orig.windep")
    archive = datasets / "bhmsds" / "bhmsds.tar"
    bh_images, bh_labels = bhmsds.read_bhmsds({path: archive for path, _, _ in bhmsds.member_records()})
    fraction = load_params(REPO_ROOT / "params.yaml").ingest.hash_test_fraction
    test = split_by_hash(image_hashes(normalize_digits(bh_images)), fraction) == "test"
    return {
        "mnist": list(zip(mnist_images, mnist_labels.tolist(), strict=True)),
        "usps": list(zip(usps_images, usps_labels.tolist(), strict=True)),
        "optdigits-orig": list(zip(opt_images, opt_labels.tolist(), strict=True)),
        "bhmsds": list(zip(bh_images[test], bh_labels[test].tolist(), strict=True)),
    }


def _condition_photo(
    pools: list[list[tuple[np.ndarray, int]]], name: str, rng: np.random.Generator
) -> SyntheticPhoto:
    """A photo of one line of 3-8 digits from one source, on the plain base with the condition `name`."""
    pool = pools[int(rng.integers(len(pools)))]
    picks = rng.integers(len(pool), size=int(rng.integers(3, 9)))
    on = {
        condition: name == condition or (name == "mixed" and condition in MIXED and rng.random() < 0.5)
        for condition in CONDITIONS
    }
    if on["ruled"] and on["boxed"]:  # a comb field is printed on plain paper
        on["ruled"] = False
    conditions = Conditions(
        tight_crop=on["tight_crop"],
        separators=0.4 if on["separators"] else 0.0,
        underline=on["underline"],
        ruled=on["ruled"],
        boxed=on["boxed"],
        pattern=on["pattern"],
        touching=0.5 if on["touching"] else 0.0,
        pressure=on["pressure"],
        perspective=on["perspective"],
        bilevel=on["bilevel"],
    )
    quality = int(rng.integers(10, 31)) if on["jpeg"] else int(rng.integers(80, 96))
    return make_photo(
        [[pool[i][0] for i in picks]],
        [[pool[i][1] for i in picks]],
        rng,
        max_rotation=8.0 if on["rotation"] else 1.0,
        jpeg_quality=quality,
        conditions=conditions,
    )


def _downscaled(photo: SyntheticPhoto, digit_px: float | None) -> SyntheticPhoto:
    """The photo scaled down until its digits' median height is `digit_px` (unchanged when None or when they
    are already as small), its digits' boxes with it."""
    factor = (
        1.0 if digit_px is None else min(1.0, digit_px / float(np.median([box[3] for box in photo.boxes])))
    )
    if factor == 1.0:
        return photo
    image = photo.image
    size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    boxes = [tuple(round(value * factor) for value in box) for box in photo.boxes]
    return dataclasses.replace(photo, image=image.resize(size, Image.Resampling.BOX), boxes=boxes)


def _truth(photo: SyntheticPhoto) -> str:
    return "\n".join("".join(map(str, line)) for line in photo.lines)


def _test_digits(datasets: Path) -> list[tuple[np.ndarray, int]]:
    """(image white-on-black uint8, label) of every MNIST and USPS test digit."""
    mnist_images, mnist_labels = read_idx_digits(
        datasets / "mnist" / "t10k-images-idx3-ubyte.gz", datasets / "mnist" / "t10k-labels-idx1-ubyte.gz"
    )
    usps_images, usps_labels = read_usps(datasets / "usps" / "zip.test.gz")
    return [
        *zip(mnist_images, mnist_labels.tolist(), strict=True),
        *zip(usps_images, usps_labels.tolist(), strict=True),
    ]


def _random_photo(
    pool: list[tuple[np.ndarray, int]], rng: np.random.Generator, paper_edge: bool = False
) -> tuple[SyntheticPhoto, list[np.ndarray]]:
    """A photo of a 3-8 digit number (one in five: two such lines), and its digit images in reading order."""
    line_count = 2 if rng.random() < 0.2 else 1
    picks = [rng.integers(len(pool), size=int(rng.integers(3, 9))) for _ in range(line_count)]
    lines = [[pool[i][0] for i in line] for line in picks]
    labels = [[pool[i][1] for i in line] for line in picks]
    return make_photo(lines, labels, rng, paper_edge=paper_edge), [image for line in lines for image in line]


def _score(photos: list[SyntheticPhoto], results: list[ReadResult], sure_at: float) -> dict:
    digits = right = miscounted = missing = extra = edits = characters = 0
    counted_digits = counted_right = 0
    truths = [_truth(photo) for photo in photos]
    texts_right = np.array([result.text == truth for truth, result in zip(truths, results, strict=True)])
    confidences = np.array([result.confidence for result in results])
    sure = confidences >= sure_at
    for truth, result in zip(truths, results, strict=True):
        edits += edit_distance(truth, result.text)
        characters += len(truth)
        true_digits = truth.replace("\n", "")
        read_digits_ = result.text.replace("\n", "")
        hits = sum(a == b for a, b in zip(true_digits, read_digits_, strict=False))
        digits += len(true_digits)
        right += hits
        difference = len(read_digits_) - len(true_digits)
        miscounted += difference != 0
        missing += max(0, -difference)
        extra += max(0, difference)
        if difference == 0:
            counted_digits += len(true_digits)
            counted_right += hits
    return {
        "digits": digits,
        "digit_accuracy": round(right / digits, 4),
        "number_accuracy": round(float(texts_right.mean()), 4),
        "character_error_rate": round(edits / characters, 4),
        "photos_with_wrong_count": miscounted,
        "missing_digits": missing,
        "extra_digits": extra,
        "digit_accuracy_where_count_right": round(counted_right / max(counted_digits, 1), 4),
        "string_ece": round(calibration_error(confidences, texts_right, CONFIDENCE_BINS), 4),
        "sure_share": round(float(sure.mean()), 4),
        "sure_accuracy": round(float(texts_right[sure].mean()), 4) if sure.any() else None,
    }


def _example_grid(photos: list[SyntheticPhoto], results: list[ReadResult], columns: int = 3) -> Image.Image:
    """Each photo with the boxes found (red) and the reading above it (green when right, red when not)."""
    tile_width, tile_height = 480, 300
    rows = -(-len(photos) // columns)
    grid = Image.new("RGB", (columns * tile_width, rows * tile_height), "white")
    for index, (photo, result) in enumerate(zip(photos, results, strict=True)):
        image = photo.image.convert("RGB")
        draw = ImageDraw.Draw(image)
        for digit in result.digits:
            x, y, width, height = digit.box
            draw.rectangle(
                (x, y, x + width, y + height), outline=(255, 0, 0), width=max(1, image.width // 300)
            )
        image.thumbnail((tile_width, tile_height - 40))
        truth = " / ".join("".join(map(str, line)) for line in photo.lines)
        reading = result.text.replace("\n", " / ")
        tile = Image.new("RGB", (tile_width, tile_height), "white")
        tile.paste(image, (0, 40))
        label = ImageDraw.Draw(tile)
        label.text((4, 4), f"true {truth}", fill=(0, 0, 0))
        label.text((4, 20), f"read {reading}", fill=(0, 140, 0) if reading == truth else (200, 0, 0))
        grid.paste(tile, ((index % columns) * tile_width, (index // columns) * tile_height))
    return grid


if __name__ == "__main__":
    sys.exit(main())
