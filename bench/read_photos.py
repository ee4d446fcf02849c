"""Read synthetic photos of handwritten numbers with `read_digits` and a trained model; print the figures.

    python bench/read_photos.py                          # models/candidate.onnx, 300 photos
    python bench/read_photos.py --model /tmp/m.onnx --photos 200 --json out.json \\
        --examples out.png
    python bench/read_photos.py --paper-edge 0.25   # a dark desk beyond the paper in 1 in 4

Each photo holds one number of 3-8 digits (one photo in five: two lines), the digits drawn at random from
the MNIST and USPS *test* sets (never seen in training), written in a random pen colour on textured paper,
lit by a gradient and a shadow, rotated, blurred and JPEG-compressed (`bench.photos`). Figures:
- digit accuracy: digits read right in their position, over all true digits;
- number accuracy: photos whose whole text is right;
- detection: photos with the wrong number of digits found, missing and extra digits (a segmentation
  error); and the digit accuracy on the photos where the count is right (the classifier's share);
- the classifier's accuracy on the same digits as the datasets give them (normalised, no photo);
- time per photo: `read_digits` (segmentation, normalisation and one classifier call), median and p95.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "src")]  # bench.photos, and digitops without installing

from bench.photos import SyntheticPhoto, make_photo  # noqa: E402
from digitops.data.idx import read_idx_digits  # noqa: E402
from digitops.data.usps import read_usps  # noqa: E402
from digitops.infer.classifier import load_classifier  # noqa: E402
from digitops.infer.segment import ReadResult, read_digits  # noqa: E402
from digitops.io import atomic_path, atomic_write  # noqa: E402
from digitops.preprocess import normalize_digits  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "models" / "candidate.onnx")
    parser.add_argument("--datasets", type=Path, default=REPO_ROOT.parent / "shared" / "datasets")
    parser.add_argument("--photos", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--paper-edge",
        type=float,
        default=0.0,
        help="fraction of photos where a dark desk shows beyond the paper",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--examples", type=Path, help="save a grid of photos with their boxes and readings")
    args = parser.parse_args(argv)

    pool = _test_digits(args.datasets)
    rng = np.random.default_rng(args.seed)
    photos, sources = zip(
        *(
            _random_photo(pool, rng, paper_edge=index < args.paper_edge * args.photos)
            for index in range(args.photos)
        ),
        strict=True,
    )
    classifier = load_classifier(args.model)
    classifier.warm_up()

    results, seconds = [], []
    for photo in photos:
        started = time.perf_counter()
        results.append(read_digits(photo.image, classifier))
        seconds.append(time.perf_counter() - started)
    figures = {
        "model": str(args.model),
        "photos": len(photos),
        "seed": args.seed,
        "paper_edge": args.paper_edge,
    }
    figures |= _score(photos, results)
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


def _score(photos: list[SyntheticPhoto], results: list[ReadResult]) -> dict:
    digits = right = numbers_right = miscounted = missing = extra = 0
    counted_digits = counted_right = 0
    for photo, result in zip(photos, results, strict=True):
        truth = "\n".join("".join(map(str, line)) for line in photo.lines)
        true_digits = truth.replace("\n", "")
        read_digits_ = result.text.replace("\n", "")
        hits = sum(a == b for a, b in zip(true_digits, read_digits_, strict=False))
        digits += len(true_digits)
        right += hits
        numbers_right += result.text == truth
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
        "number_accuracy": round(numbers_right / len(photos), 4),
        "photos_with_wrong_count": miscounted,
        "missing_digits": missing,
        "extra_digits": extra,
        "digit_accuracy_where_count_right": round(counted_right / max(counted_digits, 1), 4),
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
