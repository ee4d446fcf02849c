"""The `digitops` command. `digitops predict`: digits in image files, folders and Kaggle CSVs -> a CSV.

    digitops predict scans/ seven.png --out predictions.csv      # path,digit,confidence,label
    digitops predict test.csv --out submission.csv               # Kaggle's ImageId,Label
    digitops predict scans/ --url http://localhost:3000          # ask a running service instead

Every image goes through the service's normaliser (`digitops.infer.inputs.digit_from_image`), so a file
gets the answer the service would give it. Subcommands live in `build_parser`; each is one function that
takes the parsed arguments and returns an exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import mimetypes
import os
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

import numpy as np
from PIL import Image

from digitops.errors import DataFileError, DigitopsError
from digitops.infer.inputs import BadInputError, InputLimits, digit_from_image, open_image, png_bytes
from digitops.io import atomic_write
from digitops.preprocess import MNIST_SIZE

EXIT_OK = 0  # every input predicted, or the bad ones reported and skipped
EXIT_ERROR = 1  # a bad input with --strict, a malformed CSV, no model, the service unreachable or failing
EXIT_USAGE = 2  # wrong arguments, or no inputs found

# The service's own limits (params.yaml: serve), so a file that the service would refuse is refused here too.
LIMITS = InputLimits(max_images=64, max_bytes=10_000_000, max_pixels=25_000_000)
MODEL_BATCH = 1024  # digits per call of the local model
CSV_CHUNK_ROWS = 1024  # Kaggle CSV rows parsed at a time: a 42,000-row file never sits in memory as images
PIXEL_COLUMNS = [f"pixel{index}" for index in range(MNIST_SIZE * MNIST_SIZE)]
LABEL_COLUMN = "label"
IMAGE_SUFFIXES = frozenset(Image.registered_extensions())  # what Pillow reads, by file name: .png, .jpg ...
CSV_SUFFIX = ".csv"

EXIT_CODES_HELP = f"""exit codes:
  {EXIT_OK}  done (inputs that could not be read, or blank images, are reported on stderr and skipped)
  {EXIT_ERROR}  a bad input with --strict; a malformed Kaggle CSV; the model cannot be loaded; the service
     is unreachable or answers an error
  {EXIT_USAGE}  wrong arguments, or no inputs found"""

PREDICT_HELP = f"""Predict the digit in every image of PATH... and write one CSV.

PATH may be an image file (PNG, JPEG, anything Pillow reads), a folder (searched recursively, in sorted
order; only files with an image extension are read, the rest are counted and ignored), or a Kaggle
digit-recognizer CSV (a header of pixel0..pixel783, 0-255 white ink on black, with or without a leading
label column; a CSV must be named explicitly, CSVs inside folders are ignored).

Output (--format auto):
  one Kaggle CSV alone    Kaggle's submission format: ImageId,Label (ImageId = 1-based row in the file)
  anything else           path,digit,confidence,label: one row per image; a CSV row is named file.csv#N
                          (N = its 1-based row, Kaggle's ImageId); label is the CSV's label, else empty

{EXIT_CODES_HELP}"""


class UsageError(DigitopsError):
    """The command line asks for something impossible (exit code 2)."""


class StrictError(DigitopsError):
    """A bad input under --strict (exit code 1)."""


# ---------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class ImageFile:
    path: Path


@dataclass(frozen=True)
class KaggleCsv:
    path: Path
    has_labels: bool
    rows: int  # data rows, counted by lines (for the progress bar)


Source = ImageFile | KaggleCsv


@dataclass(frozen=True)
class Problem:
    """An input that is skipped: its name in the output's terms and why."""

    name: str
    reason: str


@dataclass
class Inputs:
    sources: list[Source] = field(default_factory=list)
    missing: list[Problem] = field(default_factory=list)  # command-line paths that do not exist
    ignored_files: int = 0  # files in folders without an image extension

    @property
    def total(self) -> int:
        """Digits to predict, at most (for the progress bar)."""
        return sum(source.rows if isinstance(source, KaggleCsv) else 1 for source in self.sources)


def find_inputs(paths: Iterable[str | os.PathLike]) -> Inputs:
    """Expand the command line's paths into image files and Kaggle CSVs, in order.

    Raises:
        DataFileError: a CSV whose header is not a Kaggle digit CSV's.
    """
    inputs = Inputs()
    for path in map(Path, paths):
        if path.is_dir():
            for child in sorted(child for child in path.rglob("*") if child.is_file()):
                if child.suffix.lower() in IMAGE_SUFFIXES:
                    inputs.sources.append(ImageFile(child))
                else:
                    inputs.ignored_files += 1
        elif not path.exists():
            inputs.missing.append(Problem(str(path), "no such file or folder"))
        elif path.suffix.lower() == CSV_SUFFIX:
            inputs.sources.append(open_kaggle_csv(path))
        else:
            inputs.sources.append(ImageFile(path))  # whatever its name; an unreadable one is reported
    return inputs


def open_kaggle_csv(path: Path) -> KaggleCsv:
    """Check a Kaggle digit CSV's header and count its rows.

    Raises:
        DataFileError: the header is not `[label,]pixel0,...,pixel783`.
    """
    try:
        with path.open(newline="") as handle:
            header = next(csv.reader(handle), [])
        with path.open("rb") as handle:
            lines = sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))
    except (OSError, UnicodeDecodeError) as error:
        raise DataFileError(path, f"cannot read it as a CSV ({error})") from None
    header = [name.strip() for name in header]
    has_labels = header[:1] == [LABEL_COLUMN]
    pixels = header[1:] if has_labels else header
    if pixels != PIXEL_COLUMNS:
        raise DataFileError(
            path,
            f"not a Kaggle digit CSV: the header has {len(header)} columns "
            f"({', '.join(header[:3])}{', ...' if len(header) > 3 else ''}); expected pixel0..pixel783 "
            f"({len(PIXEL_COLUMNS)} columns), optionally after a '{LABEL_COLUMN}' column",
        )
    return KaggleCsv(path, has_labels, rows=max(lines - 1, 0))


# ---------------------------------------------------------------------------------------------- digits


@dataclass(frozen=True)
class Digit:
    """One normalised digit, ready for the model, and what the output says about it."""

    name: str  # the file's path, or file.csv#row
    image_id: int | None  # a CSV row's 1-based number (Kaggle's ImageId)
    label: int | None  # a labelled CSV's label
    pixels: np.ndarray  # (28, 28) uint8, as the normaliser makes it
    upload: bytes | None  # what --url sends: the file's own bytes, or a CSV row as PNG


def iter_digits(sources: Iterable[Source], uploads: bool = False) -> Iterator[Digit | Problem]:
    """Each source's digits, normalised, in order; an unreadable file or a blank image is a Problem.

    Args:
        sources: from `find_inputs`.
        uploads: also keep, per digit, the bytes a service would be sent.

    Raises:
        DataFileError: a malformed row in a Kaggle CSV (wrong number of values, values outside 0-255).
    """
    for source in sources:
        if isinstance(source, KaggleCsv):
            yield from _csv_digits(source, uploads)
        else:
            yield _file_digit(source.path, uploads)


def _file_digit(path: Path, uploads: bool) -> Digit | Problem:
    name = str(path)
    try:
        if path.stat().st_size > LIMITS.max_bytes:  # refused before it is read, as the service does
            raise BadInputError(
                f"the file has {path.stat().st_size:,} bytes; the limit is {LIMITS.max_bytes:,}"
            )
        data = path.read_bytes()
        pixels = digit_from_image(open_image(data, LIMITS))
    except OSError as error:
        return Problem(name, f"cannot read the file ({error.strerror or error})")
    except ValueError as error:  # BadInputError, or an image the normaliser cannot take
        return Problem(name, str(error))
    return Digit(name, None, None, pixels, data if uploads else None)


def _csv_digits(source: KaggleCsv, uploads: bool) -> Iterator[Digit | Problem]:
    for first_row, labels, images in read_kaggle_csv(source.path, source.has_labels):
        for offset, raw in enumerate(images):
            image_id = first_row + offset
            name = f"{source.path}#{image_id}"
            label = None if labels is None else int(labels[offset])
            try:
                pixels = digit_from_image(raw)
            except BadInputError as error:
                yield Problem(name, str(error))
                continue
            yield Digit(name, image_id, label, pixels, png_bytes(raw) if uploads else None)


def read_kaggle_csv(
    path: Path, has_labels: bool, chunk_rows: int = CSV_CHUNK_ROWS
) -> Iterator[tuple[int, np.ndarray | None, np.ndarray]]:
    """A Kaggle digit CSV, `chunk_rows` rows at a time, checked.

    Yields:
        The chunk's first row number (1-based, blank lines not counted: Kaggle's ImageId), its labels
        ((n,) int64, or None) and its images ((n, 28, 28) uint8, white ink on black, as in the file).

    Raises:
        DataFileError: naming the row (or line) and column: a wrong number of values, a value that is not
            an integer in 0-255, a label outside 0-9.
    """
    import pandas as pd

    expected = len(PIXEL_COLUMNS) + has_labels
    try:
        with pd.read_csv(path, chunksize=chunk_rows) as chunks:
            for chunk in chunks:
                if chunk.empty:  # a file with only the header: no digits
                    continue
                first_row = int(chunk.index[0]) + 1
                values = _chunk_integers(path, chunk, first_row)  # (n, columns) int64
                _check_range(path, chunk, values, first_row, has_labels)
                labels = values[:, 0] if has_labels else None
                images = values[:, int(has_labels) :].astype(np.uint8).reshape(-1, MNIST_SIZE, MNIST_SIZE)
                yield first_row, labels, images
    except pd.errors.ParserError as error:
        raise DataFileError(path, _parser_problem(str(error), expected)) from None


def _chunk_integers(path: Path, chunk, first_row: int) -> np.ndarray:
    """The chunk as (n, columns) int64, or a DataFileError naming the first cell that is not an integer."""
    import pandas as pd

    if all(pd.api.types.is_integer_dtype(dtype) for dtype in chunk.dtypes):
        return chunk.to_numpy(dtype=np.int64)  # the usual case: pandas parsed every column as integers
    numbers = chunk.apply(lambda column: pd.to_numeric(column, errors="coerce")).to_numpy(dtype=np.float64)
    bad = ~np.isfinite(numbers) | (numbers != np.round(numbers))
    if bad.any():
        row, column = (int(index) for index in np.argwhere(bad)[0])
        missing = int(chunk.iloc[row].isna().sum())
        if missing:
            problem = (
                f"{missing} of its {chunk.shape[1]} values are missing (a short row, or empty values; "
                f"the first is column {chunk.columns[column]})"
            )
        else:
            value = chunk.iat[row, column]  # a str in a column of text, a float in a column of numbers
            shown = repr(value) if isinstance(value, str) else str(value)
            problem = f"column {chunk.columns[column]} is {shown}, not an integer"
        raise DataFileError(path, f"row {first_row + row}: {problem}")
    return numbers.astype(np.int64)


def _check_range(path: Path, chunk, values: np.ndarray, first_row: int, has_labels: bool) -> None:
    """Pixels must be 0-255, labels 0-9; a DataFileError names the first value that is not."""
    highest = np.full(values.shape[1], 255)
    if has_labels:
        highest[0] = 9
    bad = (values < 0) | (values > highest)
    if bad.any():
        row, column = (int(index) for index in np.argwhere(bad)[0])
        name = chunk.columns[column]
        raise DataFileError(
            path,
            f"row {first_row + row}: column {name} is {values[row, column]}, outside "
            f"{'0-9' if has_labels and column == 0 else '0-255'}",
        )


def _parser_problem(message: str, expected: int) -> str:
    """pandas' 'Expected 785 fields in line 7, saw 786' in this file's terms."""
    found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", message)
    if not found:
        return f"not a readable CSV ({message.strip()})"
    line, saw = int(found.group(2)), int(found.group(3))
    return f"line {line} has {saw} values; the header has {expected} columns"


# ---------------------------------------------------------------------------------------------- models


class Model(Protocol):
    description: str  # printed in the summary

    def probabilities(self, digits: list[Digit]) -> np.ndarray:
        """(B, 10) float probabilities, one row per digit, in order."""


class LocalModel:
    """A `.keras` model in this process, loaded as the service loads it."""

    def __init__(self, model_path: Path, description: str) -> None:
        from digitops.infer.classifier import load_classifier

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # less of TensorFlow's start-up chatter on stderr
        try:
            self.classifier = load_classifier(model_path)
        except Exception as error:  # Keras raises ValueError, OSError, TypeError ... on a bad file
            raise DigitopsError(f"cannot load the model {model_path}: {error}") from None
        self.description = description

    def probabilities(self, digits: list[Digit]) -> np.ndarray:
        return self.classifier(np.stack([digit.pixels for digit in digits]), max_batch=MODEL_BATCH)


def store_model(tag: str) -> LocalModel:
    """A model from the local BentoML store (BENTOML_HOME, default ~/bentoml), e.g. `digits:latest`."""
    import bentoml
    from bentoml.exceptions import BentoMLException

    try:
        stored = bentoml.models.get(tag)
    except (BentoMLException, ValueError) as error:
        raise DigitopsError(
            f"no model {tag} in the BentoML store ({error}); `make run` puts the champion there "
            "(set BENTOML_HOME as it was then), or pass --model-file PATH.keras or --url http://host:3000"
        ) from None
    labels = stored.info.labels
    version = f"{labels.get('registered_model', stored.tag.name)}/{labels.get('mlflow_version', '?')}"
    return LocalModel(Path(stored.path), f"{version} ({stored.tag})")


class ServiceModel:
    """A running digitops service: POST /classify, at most `LIMITS.max_images` images per request."""

    def __init__(self, url: str, timeout_s: float = 120.0) -> None:
        import httpx

        if not re.match(r"https?://", url):
            raise UsageError(f"--url {url}: expected http://host:port or https://...")
        self.url = url.rstrip("/")
        self.client = httpx.Client(timeout=timeout_s)
        self.description = f"the service at {self.url}"
        response = self._request("GET", "/readyz")
        if response.status_code != 200:
            raise DigitopsError(
                f"the service at {self.url} is not ready: /readyz answered {response.status_code} "
                f"{_service_message(response)}"
            )

    def probabilities(self, digits: list[Digit]) -> np.ndarray:
        rows = []
        for start in range(0, len(digits), LIMITS.max_images):
            chunk = digits[start : start + LIMITS.max_images]
            files = [("images", _upload_file(digit)) for digit in chunk]
            response = self._request("POST", "/classify", files=files)
            if response.status_code != 200:
                raise DigitopsError(
                    f"the service at {self.url} answered {response.status_code} to /classify for "
                    f"{chunk[0].name} .. {chunk[-1].name}: {_service_message(response)}"
                )
            answers = response.json()
            if not isinstance(answers, list) or len(answers) != len(chunk):
                raise DigitopsError(
                    f"the service at {self.url} answered {len(chunk)} images with {str(answers)[:300]}"
                )
            rows += [answer["probabilities"] for answer in answers]
        return np.asarray(rows, dtype=np.float32)

    def close(self) -> None:
        self.client.close()

    def _request(self, method: str, route: str, **kwargs):
        import httpx

        try:
            return self.client.request(method, f"{self.url}{route}", **kwargs)
        except httpx.HTTPError as error:
            raise DigitopsError(
                f"cannot reach the service at {self.url} ({type(error).__name__}: {error})"
            ) from None


def _upload_file(digit: Digit) -> tuple[str, bytes, str]:
    """(file name, bytes, content type) of one multipart part, as curl -F images=@file sends it."""
    name = Path(digit.name).name if digit.image_id is None else f"row{digit.image_id}.png"
    content_type = "image/png" if digit.image_id is not None else mimetypes.guess_type(name)[0]
    return name, digit.upload, content_type or "application/octet-stream"


def _service_message(response) -> str:
    """The service's own words: BentoML's 400s carry a JSON `detail` list of {msg, ...}."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500]
    if isinstance(body, dict) and isinstance(body.get("detail"), list):
        messages = [item.get("msg", str(item)) for item in body["detail"] if isinstance(item, dict)]
        if messages:
            return "; ".join(messages)
    return str(body)[:500]


# ---------------------------------------------------------------------------------------------- output


class Table:
    """`path,digit,confidence,label`: one row per digit, for any mix of inputs."""

    header = ("path", "digit", "confidence", "label")

    def row(self, digit: Digit, predicted: int, confidence: float) -> tuple:
        return digit.name, predicted, f"{confidence:.6f}", "" if digit.label is None else digit.label


class Submission:
    """Kaggle's digit-recognizer submission: `ImageId,Label`."""

    header = ("ImageId", "Label")

    def row(self, digit: Digit, predicted: int, confidence: float) -> tuple:
        return digit.image_id, predicted


def choose_format(sources: list[Source], requested: str) -> Table | Submission:
    """`auto`: the submission format for one Kaggle CSV alone, else the table.

    Raises:
        UsageError: `kaggle` asked for anything but one Kaggle CSV.
    """
    one_csv = len(sources) == 1 and isinstance(sources[0], KaggleCsv)
    if requested == "kaggle" and not one_csv:
        raise UsageError("--format kaggle needs exactly one Kaggle CSV as input (ImageIds are its rows)")
    if requested == "kaggle" or (requested == "auto" and one_csv):
        return Submission()
    return Table()


@contextlib.contextmanager
def open_output(out: str | None) -> Iterator[IO[str]]:
    """stdout for None or '-', else the file, written atomically (complete, or not at all)."""
    if out is None or out == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    with atomic_write(out, "w") as handle:
        yield handle


# ---------------------------------------------------------------------------------------------- predict


@dataclass
class Summary:
    predicted: int = 0
    skipped: int = 0  # unreadable or blank
    ignored_files: int = 0
    labelled: int = 0
    correct: int = 0

    def line(self, model: str) -> str:
        parts = [f"{self.predicted:,} digits predicted by {model}"]
        if self.skipped:
            parts.append(f"{self.skipped:,} skipped (unreadable or blank, listed above)")
        if self.ignored_files:
            files = "file" if self.ignored_files == 1 else "files"
            parts.append(f"{self.ignored_files:,} {files} without an image extension ignored")
        if self.labelled:
            parts.append(
                f"accuracy {self.correct / self.labelled:.2%} on the {self.labelled:,} labelled digits"
            )
        return "; ".join(parts)


def predict(
    digits: Iterable[Digit | Problem],
    model: Model,
    output_format: Table | Submission,
    output: IO[str],
    *,
    strict: bool = False,
    batch_size: int = MODEL_BATCH,
    warn=None,
) -> Summary:
    """Predict every digit, `batch_size` at a time, and write the CSV rows in input order.

    Args:
        warn: called with each skipped input's line (default: print to stderr).

    Raises:
        StrictError: the first Problem, when `strict`.
    """
    warn = warn or (lambda line: print(line, file=sys.stderr))
    writer = csv.writer(output, lineterminator="\n")
    writer.writerow(output_format.header)
    summary = Summary()
    batch: list[Digit] = []

    def flush() -> None:
        if not batch:
            return
        probabilities = model.probabilities(batch)  # (B, 10)
        for digit, row in zip(batch, probabilities, strict=True):
            predicted = int(row.argmax())
            writer.writerow(output_format.row(digit, predicted, float(row[predicted])))
            if digit.label is not None:
                summary.labelled += 1
                summary.correct += predicted == digit.label
        summary.predicted += len(batch)
        batch.clear()

    for item in digits:
        if isinstance(item, Problem):
            if strict:
                raise StrictError(f"{item.name}: {item.reason} (--strict)")
            warn(f"skipped {item.name}: {item.reason}")
            summary.skipped += 1
            continue
        batch.append(item)
        if len(batch) >= batch_size:
            flush()
    flush()
    return summary


def _with_progress(items: Iterable, total: int, enabled: bool) -> Iterator:
    """`items`, counted on a progress bar on stderr when `enabled`."""
    from tqdm import tqdm

    with tqdm(total=total, unit="digit", file=sys.stderr, disable=not enabled, leave=False) as bar:
        for item in items:
            yield item
            bar.update()


def run_predict(args: argparse.Namespace) -> int:
    """`digitops predict`: see PREDICT_HELP."""
    inputs = find_inputs(args.paths)
    if not inputs.sources:
        missing = "; ".join(f"{problem.name}: {problem.reason}" for problem in inputs.missing)
        why = missing or f"{inputs.ignored_files} files, none with an image extension"
        print(f"error: no inputs found in {' '.join(args.paths)} ({why})", file=sys.stderr)
        return EXIT_USAGE
    output_format = choose_format(inputs.sources, args.format)
    if args.strict and inputs.missing:
        raise StrictError(f"{inputs.missing[0].name}: {inputs.missing[0].reason} (--strict)")
    for problem in inputs.missing:
        print(f"skipped {problem.name}: {problem.reason}", file=sys.stderr)

    model = ServiceModel(args.url) if args.url else _local_model(args)
    progress = not args.quiet and sys.stderr.isatty()
    warn = _progress_safe_print if progress else (lambda line: print(line, file=sys.stderr))
    try:
        digits = _with_progress(iter_digits(inputs.sources, uploads=bool(args.url)), inputs.total, progress)
        with open_output(args.out) as output:
            summary = predict(digits, model, output_format, output, strict=args.strict, warn=warn)
    finally:
        if isinstance(model, ServiceModel):
            model.close()
    summary.skipped += len(inputs.missing)
    summary.ignored_files = inputs.ignored_files
    if not args.quiet:
        written = "" if args.out in (None, "-") else f"; written to {args.out}"
        print(summary.line(model.description) + written, file=sys.stderr)
    return EXIT_OK


def _local_model(args: argparse.Namespace) -> LocalModel:
    if args.model_file:
        path = Path(args.model_file)
        if not path.exists():
            raise UsageError(f"--model-file {path}: no such file")
        return LocalModel(path, str(path))
    return store_model(args.model)


def _progress_safe_print(line: str) -> None:
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)


# ---------------------------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="digitops",
        description="Handwritten-digit recognition from the command line.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    predict_parser = commands.add_parser(
        "predict",
        help="predict the digits in image files, folders and Kaggle CSVs",
        description=PREDICT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    predict_parser.add_argument("paths", nargs="+", metavar="PATH", help="image file, folder or Kaggle CSV")
    predict_parser.add_argument(
        "--out", "-o", metavar="FILE", help="the CSV to write, atomically (default, or '-': stdout)"
    )
    source = predict_parser.add_mutually_exclusive_group()
    source.add_argument(
        "--model",
        default="digits:latest",
        metavar="TAG",
        help="a model in the BentoML store (BENTOML_HOME) (default: digits:latest, the packaged champion)",
    )
    source.add_argument("--model-file", metavar="PATH", help="a .keras model file instead")
    source.add_argument("--url", metavar="URL", help="a running service instead, e.g. http://localhost:3000")
    predict_parser.add_argument(
        "--format",
        choices=("auto", "table", "kaggle"),
        default="auto",
        help="auto (default): kaggle for one Kaggle CSV alone, else table (path,digit,confidence,label)",
    )
    predict_parser.add_argument(
        "--strict", action="store_true", help="stop with exit code 1 at the first unreadable or blank image"
    )
    predict_parser.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="no progress bar and no summary line (problems still shown)",
    )
    predict_parser.set_defaults(handler=run_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The `digitops` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except DigitopsError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # stdout was closed early (| head): stop quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
