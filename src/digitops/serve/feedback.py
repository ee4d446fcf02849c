"""Contributed drawings (`POST /feedback`): checked, then stored for the next `dvc repro`.

    stored = store_drawings([(png_bytes, 7)], feedback_dir(), limits)

The folder (see `digitops.data.drawings`, which reads it as the `drawings` source) holds
`<sha256 of the file>.png` per drawing and `manifest.jsonl`, one line per drawing. How it stays consistent
while several service workers store at once and `dvc repro` reads:
- Every item of a request is checked before anything is written; one bad item refuses the whole request
  with a `BadInputError` that names the item (0-based), and the folder is left as it was.
- Each PNG is written atomically (temporary file, then rename), before its manifest line: a reader never
  meets a recorded file that is missing or half written.
- The manifest is rewritten whole, atomically (old lines + new lines into a temporary file, then rename),
  under an exclusive `fcntl.flock` on `<folder>/.lock` held by one request at a time. The lock makes
  "read the manifest, check for duplicates and conflicts, add the new lines" one step across processes,
  so two workers cannot both add the same drawing or lose each other's lines; the rename means a reader
  (ingest, without the lock) sees the old manifest or the new one, never a torn line, even if the worker
  dies mid-write. Rewriting costs one read and write of the manifest per request (one short JSON line
  per drawing), cheap next to decoding the images.
- The same bytes with the same label are stored once (the later submission is reported as a duplicate);
  the same bytes with a different label are refused: a label we cannot trust must not reach training.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from PIL import Image, ImageOps

from digitops.data.drawings import MANIFEST_NAME, DrawingRecord, read_manifest
from digitops.digits import NUM_CLASSES
from digitops.infer.inputs import BadInputError, InputLimits, digit_from_image, open_image
from digitops.io import atomic_write

FEEDBACK_DIR_ENV = "DIGITOPS_FEEDBACK_DIR"
DEFAULT_FEEDBACK_DIR = Path("data/feedback")  # params.yaml base.paths.feedback (a test keeps them equal)
LOCK_NAME = ".lock"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_MODES = {"1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"}  # what Pillow writes to PNG as they are


@dataclass(frozen=True)
class StoredDrawing:
    """What became of one contributed drawing."""

    file: str  # "<sha256>.png" in the feedback folder
    sha256: str  # of the stored PNG's bytes
    label: int
    duplicate: bool  # True: the folder already held it with this label (or the request held it twice)


def feedback_dir(default: Path = DEFAULT_FEEDBACK_DIR, environ: Mapping[str, str] = os.environ) -> Path:
    """The feedback folder: DIGITOPS_FEEDBACK_DIR when set and not empty, else `default`.

    A relative path is relative to the working directory (the repository root for `make serve`).
    """
    value = environ.get(FEEDBACK_DIR_ENV, "").strip()
    return Path(value).expanduser() if value else Path(default)


def store_drawings(
    items: Sequence[tuple[bytes, int]], folder: Path, limits: InputLimits
) -> list[StoredDrawing]:
    """Check contributed drawings and store them, all or none, for the next `dvc repro`.

    Args:
        items: (image file bytes, true label 0-9) per drawing: PNG as drawn on the page (RGBA, the ink in
            alpha), or any format Pillow reads (stored as PNG, pixels unchanged).
        folder: the feedback folder (`feedback_dir()`); created when missing.
        limits: the request limits.

    Returns:
        per item, in order: its file, SHA-256, label, and whether it was a duplicate.

    Raises:
        BadInputError: no items or too many; an item (named by its 0-based index) has a label that is not
            an integer 0-9, bytes that are not a readable image within the limits, a blank image, or the
            bytes of a drawing already stored with another label. Nothing is written then.
    """
    if not items:
        raise BadInputError("no drawings: send at least one")
    if len(items) > limits.max_images:
        raise BadInputError(f"{len(items)} drawings in one request; the limit is {limits.max_images}")
    pngs = [_checked_png(index, item, limits) for index, item in enumerate(items)]
    labels = [label for _, label in items]
    digests = [hashlib.sha256(png).hexdigest() for png in pngs]
    _refuse_conflicts(digests, labels, {})  # within the request, before taking the lock

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(folder / LOCK_NAME):
        known = {record.sha256: record.label for record in read_manifest(folder)}
        _refuse_conflicts(digests, labels, known)
        received = datetime.now(UTC).isoformat(timespec="milliseconds")
        results, new_records, written = [], [], []
        try:
            for png, digest, label in zip(pngs, digests, labels, strict=True):
                duplicate = digest in known
                results.append(StoredDrawing(f"{digest}.png", digest, label, duplicate))
                if duplicate:
                    continue
                known[digest] = label
                path = folder / f"{digest}.png"
                if not _holds(path, png):  # a file left by an earlier, failed request is reused
                    with atomic_write(path) as handle:
                        handle.write(png)
                    written.append(path)
                new_records.append(DrawingRecord(path.name, label, digest, received))
            if new_records:
                _append_records(folder / MANIFEST_NAME, new_records)
        except BaseException:
            for path in written:  # no file without its manifest line
                path.unlink(missing_ok=True)
            raise
    return results


def _checked_png(index: int, item: object, limits: InputLimits) -> bytes:
    """One item -> the PNG bytes to store. Raises BadInputError naming the item."""
    if isinstance(item, str | bytes | bytearray) or not isinstance(item, Sequence) or len(item) != 2:
        raise BadInputError(f"item {index}: expected (image bytes, label), got {type(item).__name__}")
    data, label = item
    if type(label) is not int or not 0 <= label < NUM_CLASSES:  # bool is an int subclass: refused too
        raise BadInputError(
            f"item {index}: the label must be an integer 0-9, got {label!r} ({type(label).__name__})"
        )
    if not isinstance(data, bytes | bytearray):
        raise BadInputError(f"item {index}: expected the image file's bytes, got {type(data).__name__}")
    try:
        image = open_image(bytes(data), limits)
        digit_from_image(image)  # refuses a blank drawing
    except BadInputError as error:
        raise BadInputError(f"item {index}: {error}") from None
    if bytes(data[:8]) == _PNG_SIGNATURE:
        return bytes(data)  # stored as sent
    return _as_png(image)


def _as_png(image: Image.Image) -> bytes:
    """Any decoded image -> lossless PNG of the same pixels (upright, alpha kept)."""
    image = ImageOps.exif_transpose(image)  # PNG would drop the EXIF orientation the normaliser applies
    if image.mode not in _PNG_MODES:  # CMYK, YCbCr, LAB, 32-bit float ...
        has_alpha = "A" in image.getbands() or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _refuse_conflicts(digests: Sequence[str], labels: Sequence[int], known: Mapping[str, int]) -> None:
    """BadInputError when an item's bytes are stored (or sent earlier in the request) with another label."""
    seen = dict(known)
    for index, (digest, label) in enumerate(zip(digests, labels, strict=True)):
        earlier = seen.setdefault(digest, label)
        if earlier != label:
            where = "was already contributed" if digest in known else "is also in this request"
            raise BadInputError(
                f"item {index}: this exact image {where} with label {earlier}, not {label}; "
                "conflicting labels are refused"
            )


def _holds(path: Path, data: bytes) -> bool:
    try:
        return path.read_bytes() == data
    except FileNotFoundError:
        return False


def _append_records(manifest: Path, records: Sequence[DrawingRecord]) -> None:
    """Rewrite the manifest with `records` added at the end, atomically. Call with the folder's lock held."""
    try:
        old = manifest.read_bytes()
    except FileNotFoundError:
        old = b""
    if old and not old.endswith(b"\n"):
        old += b"\n"
    new = "".join(record.to_json() + "\n" for record in records).encode("utf-8")
    with atomic_write(manifest) as handle:
        handle.write(old + new)


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on `path` (created if missing): one holder at a time across processes."""
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
