"""Batch prediction over image files, folders and Kaggle CSVs, by a local model or a running service.

    inputs = find_inputs(["scans/", "test.csv"])                      # image files and Kaggle CSVs
    digits = iter_digits(inputs.sources, limits)                      # normalised digits, or Problems
    with open_output("predictions.csv") as output:
        summary = predict(digits, local_model(None, "digits:latest"), Table(), output)

Every image goes through the service's normaliser (`digitops.infer.inputs.digit_from_image`) under the
service's limits, so a file gets the answer the service would give it. The CLI (`digitops predict`) calls
this module; nothing here reads the command line.
"""

from __future__ import annotations

import contextlib
import csv
import mimetypes
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

import numpy as np
from PIL import Image

from digitops.data.kaggle import KaggleCsv, open_kaggle_csv, read_kaggle_csv
from digitops.errors import DigitopsError
from digitops.infer.inputs import BadInputError, InputLimits, digit_from_image, open_image, png_bytes
from digitops.io import atomic_write

MODEL_BATCH = 1024  # digits per call of the local model
IMAGE_SUFFIXES = frozenset(Image.registered_extensions())  # what Pillow reads, by file name: .png, .jpg ...
CSV_SUFFIX = ".csv"


class UsageError(DigitopsError):
    """Something impossible was asked for: a wrong option or combination (the CLI exits with 2)."""


class StrictError(DigitopsError):
    """A bad input under `strict` (the CLI exits with 1)."""


# ---------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class ImageFile:
    path: Path


Source = ImageFile | KaggleCsv


@dataclass(frozen=True)
class Problem:
    """An input that is skipped: its name in the output's terms and why."""

    name: str
    reason: str


@dataclass
class Inputs:
    sources: list[Source] = field(default_factory=list)
    missing: list[Problem] = field(default_factory=list)  # paths that do not exist
    ignored_files: int = 0  # files in folders without an image extension

    @property
    def total(self) -> int:
        """Digits to predict, at most (for a progress bar)."""
        return sum(source.rows if isinstance(source, KaggleCsv) else 1 for source in self.sources)


def find_inputs(paths: Iterable[str | os.PathLike]) -> Inputs:
    """Expand paths into image files and Kaggle CSVs, in order.

    A folder is searched recursively, in sorted order, for files with an image extension (CSVs inside it
    are ignored); a CSV counts only when named; any other file is taken as an image, whatever its name.

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


# ---------------------------------------------------------------------------------------------- digits


@dataclass(frozen=True)
class Digit:
    """One normalised digit, ready for the model, and what the output says about it."""

    name: str  # the file's path, or file.csv#row
    image_id: int | None  # a CSV row's 1-based number (Kaggle's ImageId)
    label: int | None  # a labelled CSV's label
    pixels: np.ndarray  # (28, 28) uint8, as the normaliser makes it
    upload: bytes | None  # what a service is sent: the file's own bytes, or a CSV row as PNG


def iter_digits(
    sources: Iterable[Source], limits: InputLimits, uploads: bool = False
) -> Iterator[Digit | Problem]:
    """Each source's digits, normalised, in order; an unreadable file or a blank image is a Problem.

    Args:
        sources: from `find_inputs`.
        limits: the service's limits on a file (`InputLimits.from_serve`): a file it would refuse is a
            Problem here too.
        uploads: also keep, per digit, the bytes a service would be sent.

    Raises:
        DataFileError: a malformed row in a Kaggle CSV (wrong number of values, values outside 0-255).
    """
    for source in sources:
        if isinstance(source, KaggleCsv):
            yield from _csv_digits(source, uploads)
        else:
            yield _file_digit(source.path, limits, uploads)


def _file_digit(path: Path, limits: InputLimits, uploads: bool) -> Digit | Problem:
    name = str(path)
    try:
        if path.stat().st_size > limits.max_bytes:  # refused before it is read, as the service does
            raise BadInputError(
                f"the file has {path.stat().st_size:,} bytes; the limit is {limits.max_bytes:,}"
            )
        data = path.read_bytes()
        pixels = digit_from_image(open_image(data, limits))
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


# ---------------------------------------------------------------------------------------------- models


class Model(Protocol):
    description: str  # printed in the summary

    def probabilities(self, digits: list[Digit]) -> np.ndarray:
        """(B, 10) float probabilities, one row per digit, in order."""


class LocalModel:
    """An ONNX model in this process (a `.onnx` file or a BentoML model), loaded as the service loads it."""

    def __init__(self, model_path: Path, description: str) -> None:
        from digitops.infer.classifier import ModelFileError, load_classifier

        try:
            self.classifier = load_classifier(model_path)
        except ModelFileError as error:
            raise DigitopsError(f"cannot load the model: {error}") from None
        self.description = description

    def probabilities(self, digits: list[Digit]) -> np.ndarray:
        return self.classifier(np.stack([digit.pixels for digit in digits]), max_batch=MODEL_BATCH)

    def close(self) -> None:
        """Nothing to release (the model lives as long as the process)."""


def local_model(model_file: str | os.PathLike | None, tag: str) -> LocalModel:
    """The model in `model_file` if given, else the model `tag` (e.g. `digits:latest`) of the BentoML store.

    Raises:
        UsageError: `model_file` does not exist.
        DigitopsError: the model cannot be loaded, or the store has no such tag.
    """
    if model_file is None:
        return store_model(tag)
    path = Path(model_file)
    if not path.exists():
        raise UsageError(f"--model-file {path}: no such file")
    return LocalModel(path, str(path))


def store_model(tag: str) -> LocalModel:
    """A model from the local BentoML store (BENTOML_HOME, default ~/bentoml), e.g. `digits:latest`."""
    import bentoml
    from bentoml.exceptions import BentoMLException

    try:
        stored = bentoml.models.get(tag)
    except (BentoMLException, ValueError) as error:
        raise DigitopsError(
            f"no model {tag} in the BentoML store ({error}); `make run` puts the champion there "
            "(set BENTOML_HOME as it was then), or pass --model-file PATH.onnx or --url http://host:3000"
        ) from None
    labels = stored.info.labels
    version = f"{labels.get('registered_model', stored.tag.name)}/{labels.get('mlflow_version', '?')}"
    return LocalModel(Path(stored.path), f"{version} ({stored.tag})")


class ServiceModel:
    """A running digitops service: POST /classify, at most `max_images` images per request."""

    def __init__(self, url: str, max_images: int, timeout_s: float = 120.0) -> None:
        import httpx

        if not re.match(r"https?://", url):
            raise UsageError(f"--url {url}: expected http://host:port or https://...")
        self.url = url.rstrip("/")
        self.max_images = max_images  # the service's serve.max_images_per_request
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
        for start in range(0, len(digits), self.max_images):
            chunk = digits[start : start + self.max_images]
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
    warn: Callable[[str], None] | None = None,
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
