"""Contributed drawings: the folder the service stores them in (`digitops.serve.feedback`), as a data source.

The folder holds one PNG per drawing, named by the SHA-256 of its bytes, and `manifest.jsonl`, one JSON
object per drawing: `{"file": "<sha256>.png", "label": 7, "sha256": "<sha256>", "received": "<ISO UTC>",
"digit_sha256": "<sha256 of the normalised 28x28 digit>", "client": "<who sent it>", "bytes": 1234}` (the
last three are absent from lines written before they were recorded). A drawing is in the data set once its
manifest line is: the service writes the PNG first, then appends the line, so a reader never sees a line
whose file is missing; a last line without its newline is still being written and is not read yet.

Drawings have no official split: each goes to `train` or `test` by the content hash of its normalised
image (`split_by_hash`), so it keeps its split as more arrive, and identical digits share a split.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from digitops.digits import NUM_CLASSES
from digitops.errors import DataFileError
from digitops.io import atomic_write

MANIFEST_NAME = "manifest.jsonl"
LOCK_NAME = ".lock"  # writers of a folder's manifest hold an exclusive flock on it
FEEDBACK_DIR_ENV = "DIGITOPS_FEEDBACK_DIR"
DEFAULT_FEEDBACK_DIR = Path("data/feedback")  # params.yaml base.paths.feedback (a test keeps them equal)
_RECORD_KEYS = ("file", "label", "sha256", "received")
_OPTIONAL_KEYS = ("digit_sha256", "client", "bytes")  # recorded since contributions are attributed


@dataclass(frozen=True)
class DrawingRecord:
    """One line of the manifest: a stored drawing and its true label."""

    file: str  # "<sha256>.png", relative to the folder
    label: int  # 0-9
    sha256: str  # of the file's bytes
    received: str  # ISO 8601, UTC
    digit_sha256: str | None = None  # of the normalised (28, 28) digit: what duplicates are judged on
    client: str = ""  # who sent it (the client's address), for quotas and withdrawal
    bytes: int = 0  # the stored file's size

    def to_json(self) -> str:
        return json.dumps(
            {
                "file": self.file,
                "label": self.label,
                "sha256": self.sha256,
                "received": self.received,
                "digit_sha256": self.digit_sha256,
                "client": self.client,
                "bytes": self.bytes,
            }
        )


def feedback_dir(default: Path = DEFAULT_FEEDBACK_DIR, environ: Mapping[str, str] = os.environ) -> Path:
    """The feedback folder: DIGITOPS_FEEDBACK_DIR when set and not empty, else `default`.

    A relative path is relative to the working directory (the repository root for `make serve`).
    """
    value = environ.get(FEEDBACK_DIR_ENV, "").strip()
    return Path(value).expanduser() if value else Path(default)


def read_manifest(folder: Path) -> list[DrawingRecord]:
    """The drawings recorded in `<folder>/manifest.jsonl`, in the order they arrived.

    A missing folder or manifest means no drawings yet: an empty list.

    Raises:
        DataFileError: a line is not a well-formed record (names the line).
    """
    path = Path(folder) / MANIFEST_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    if not text.endswith("\n"):  # the last line is still being appended: not recorded yet
        text = text[: text.rfind("\n") + 1]
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            fields = json.loads(line)
            optional = {key: fields[key] for key in _OPTIONAL_KEYS if key in fields}
            record = DrawingRecord(**{key: fields[key] for key in _RECORD_KEYS}, **optional)
        except (ValueError, TypeError, KeyError) as error:
            raise DataFileError(path, f"line {number} is not a drawing record ({error})") from None
        if type(record.label) is not int or not 0 <= record.label < NUM_CLASSES:
            raise DataFileError(path, f"line {number}: label {record.label!r} is not an integer 0-9")
        if record.file != f"{record.sha256}.png":
            raise DataFileError(path, f"line {number}: file {record.file!r} is not named by its sha256")
        records.append(record)
    return records


def read_drawings(folder: Path) -> tuple[list[Image.Image], np.ndarray]:
    """Load every recorded drawing as it was stored, checking each file against its SHA-256.

    Args:
        folder: the feedback folder.

    Returns:
        the images as stored, in manifest order (loaded PIL images of any size and mode; canvas drawings
        are RGBA with the ink in alpha), for the normaliser to read exactly as the service reads an
        upload; and their labels (N,) int64.

    Raises:
        DataFileError: a recorded file is missing, altered, unreadable, or recorded twice with two labels.
    """
    images, labels, _ = read_named_drawings(folder)
    return images, labels


def read_named_drawings(folder: Path) -> tuple[list[Image.Image], np.ndarray, list[str]]:
    """`read_drawings`, and the SHA-256 of each drawing's file (N,): the name a report cites it by."""
    folder = Path(folder)
    images, labels, names = [], [], []
    label_of: dict[str, int] = {}
    for record in read_manifest(folder):
        if record.sha256 in label_of:
            if label_of[record.sha256] != record.label:
                raise DataFileError(
                    folder / MANIFEST_NAME,
                    f"{record.file} is recorded with labels {label_of[record.sha256]} and {record.label}",
                )
            continue  # recorded twice with one label: one digit
        path = folder / record.file
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise DataFileError(
                path, f"missing: {MANIFEST_NAME} records it with label {record.label}"
            ) from None
        if hashlib.sha256(data).hexdigest() != record.sha256:
            raise DataFileError(path, "its bytes do not match the sha256 it is named by: altered or damaged")
        try:
            image = Image.open(io.BytesIO(data))
            image.load()
        except Exception as error:  # Pillow raises many kinds on a damaged file
            raise DataFileError(path, f"not a readable image ({error})") from None
        images.append(image)
        labels.append(record.label)
        names.append(record.sha256)
        label_of[record.sha256] = record.label
    return images, np.array(labels, dtype=np.int64), names


def stored_bytes(folder: Path, records: Sequence[DrawingRecord] | None = None) -> int:
    """The size of the drawings `folder`'s manifest records (`records`, when already read)."""
    folder = Path(folder)
    total = 0
    for record in read_manifest(folder) if records is None else records:
        if record.bytes:
            total += record.bytes
        else:  # a line from before sizes were recorded
            with contextlib.suppress(FileNotFoundError):
                total += (folder / record.file).stat().st_size
    return total


def split_by_hash(hashes: np.ndarray, test_fraction: float) -> np.ndarray:
    """Each digit's split: `test` when the first 64 bits of its hex content hash, read as a number in [0, 1),
    fall below `test_fraction`, else `train`.

    Deterministic and independent of the other digits: a drawing keeps its split as the folder grows.

    Args:
        hashes: (N,) hex strings of at least 16 characters (`digitops.fingerprint.image_hashes`).
        test_fraction: the expected share of `test`, in [0, 1].

    Returns:
        (N,) str: 'train' or 'test'.
    """
    position = np.array([int(digest[:16], 16) / 2.0**64 for digest in hashes], dtype=np.float64)
    return np.where(position < test_fraction, "test", "train").astype("U5")


def append_records(manifest: Path, records: Sequence[DrawingRecord]) -> None:
    """Append `records` to the manifest in one write. Call with the folder's lock held.

    A last line without its newline was torn by a writer that died: it is cut off first (its drawing was
    never recorded, so its sender may send it again).
    """
    with manifest.open("a+b") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size:
            handle.seek(0)
            text = handle.read()
            if not text.endswith(b"\n"):
                handle.truncate(text.rfind(b"\n") + 1)
        handle.write("".join(record.to_json() + "\n" for record in records).encode("utf-8"))
        handle.flush()
        os.fsync(handle.fileno())


def rewrite_manifest(folder: Path, records: Sequence[DrawingRecord]) -> None:
    """Replace the manifest with `records`, atomically (compaction). Call with the folder's lock held."""
    with atomic_write(Path(folder) / MANIFEST_NAME) as handle:
        handle.write("".join(record.to_json() + "\n" for record in records).encode("utf-8"))


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on `path` (created if missing): one holder at a time across processes."""
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
