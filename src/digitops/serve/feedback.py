"""Contributed drawings (`POST /feedback`): checked, then stored for the next `dvc repro`.

    stored = store_drawings([(png_bytes, 7)], feedback_dir(), limits, client="10.0.0.5", quota=quota)

The folder (see `digitops.data.drawings`, which reads it as the `drawings` source) holds
`<sha256 of the file>.png` per drawing and `manifest.jsonl`, one line per drawing. How it stays consistent
while several service workers store at once and `dvc repro` reads:
- Every item of a request is checked before anything is written; one bad item refuses the whole request
  with a `BadInputError` that names the item (0-based), and the folder is left as it was.
- Each drawing is stored re-encoded from its decoded pixels as a canonical PNG: whatever else the upload
  carried (bytes after the image's end, metadata chunks) is not kept.
- Each PNG is written atomically (temporary file, then rename), before its manifest line: a reader never
  meets a recorded file that is missing or half written.
- The manifest is append-only: the new lines are appended in one write under an exclusive `fcntl.flock`
  on `<folder>/.lock`, held by one request at a time. The lock makes "read the manifest, check duplicates,
  conflicts and quotas, append" one step across processes; a reader (ingest, without the lock) ignores a
  last line that has no newline yet, and the next writer cuts such a torn line off before appending.
- Duplicates and conflicts are judged on the normalised digit, not the bytes: the same drawing re-encoded
  is the same drawing. Sent again with the same label it is stored once (reported as a duplicate); with
  a different label it is refused: a label we cannot trust must not reach training.
- Each line records who sent the drawing (`client`), so that a client's contributions in the last 24
  hours are capped (`QuotaExceededError`, 429) and the folder's size is capped (`StorageFullError`, 507).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from digitops.data.drawings import (  # noqa: F401  (the folder's location, re-exported for the service)
    DEFAULT_FEEDBACK_DIR,
    FEEDBACK_DIR_ENV,
    LOCK_NAME,
    MANIFEST_NAME,
    DrawingRecord,
    append_records,
    exclusive_lock,
    feedback_dir,
    read_manifest,
    stored_bytes,
)
from digitops.digits import NUM_CLASSES
from digitops.errors import DigitopsError
from digitops.infer.inputs import BadInputError, InputLimits, digit_from_image, open_image
from digitops.io import atomic_write

QUOTA_WINDOW = timedelta(hours=24)
_PNG_MODES = {"1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"}  # what Pillow writes to PNG as they are


class QuotaExceededError(DigitopsError):
    """The client has contributed its share for now (HTTP 429)."""


class StorageFullError(DigitopsError):
    """The feedback folder has reached its size cap (HTTP 507)."""


@dataclass(frozen=True)
class FeedbackQuota:
    """How much may be contributed: per client in `QUOTA_WINDOW`, and in all (the folder's size)."""

    per_client_per_day: int  # drawings
    max_folder_bytes: int  # the stored drawings' files together


@dataclass(frozen=True)
class StoredDrawing:
    """What became of one contributed drawing."""

    file: str  # "<sha256>.png" in the feedback folder
    sha256: str  # of the stored PNG's bytes
    label: int
    duplicate: bool  # True: the folder already held it with this label (or the request held it twice)


def store_drawings(
    items: Sequence[tuple[bytes, int]],
    folder: Path,
    limits: InputLimits,
    client: str = "",
    quota: FeedbackQuota | None = None,
    contract: Callable[[np.ndarray], list[str]] | None = None,
) -> list[StoredDrawing]:
    """Check contributed drawings and store them, all or none, for the next `dvc repro`.

    Args:
        items: (image file bytes, true label 0-9) per drawing: PNG as drawn on the page (RGBA, the ink in
            alpha), or any format Pillow reads; stored as a canonical PNG of the decoded pixels.
        folder: the feedback folder (`feedback_dir()`); created when missing.
        limits: the request limits.
        client: who sends them (recorded with each drawing; the quota is per client).
        quota: the caps; None: no caps (tests, tools).
        contract: the data contract's objections to a normalised (28, 28) digit
            (`digitops.validate.digit_problems`): a drawing it objects to is refused now, not at the next
            `dvc repro`, where it would stop the pipeline. None: not checked.

    Returns:
        per item, in order: its file, SHA-256, label, and whether it was a duplicate.

    Raises:
        BadInputError: no items or too many; an item (named by its 0-based index) has a label that is not
            an integer 0-9, bytes that are not a readable image within the limits, a blank image, or the
            digit of a drawing already stored with another label. Nothing is written then.
        QuotaExceededError: the client would pass `quota.per_client_per_day`. Nothing is written.
        StorageFullError: the folder would pass `quota.max_folder_bytes`. Nothing is written.
    """
    if not items:
        raise BadInputError("no drawings: send at least one")
    if len(items) > limits.max_images:
        raise BadInputError(f"{len(items)} drawings in one request; the limit is {limits.max_images}")
    checked = [_checked_png(index, item, limits, contract) for index, item in enumerate(items)]
    pngs = [png for png, _ in checked]
    digit_digests = [digit for _, digit in checked]
    labels = [label for _, label in items]
    digests = [hashlib.sha256(png).hexdigest() for png in pngs]
    _refuse_conflicts(digit_digests, labels, {})  # within the request, before taking the lock

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(folder / LOCK_NAME):
        records = read_manifest(folder)
        known = {record.digit_sha256: record.label for record in records if record.digit_sha256}
        known_files = {record.sha256: record.label for record in records}  # lines from before digit hashes
        _refuse_conflicts(digit_digests, labels, known)
        _refuse_conflicts(digests, labels, known_files)
        fresh = [
            index
            for index, (digit, digest) in enumerate(zip(digit_digests, digests, strict=True))
            if digit not in known and digest not in known_files and digit not in digit_digests[:index]
        ]
        received = datetime.now(UTC)
        if quota is not None:
            _check_quota(records, folder, client, [len(pngs[index]) for index in fresh], received, quota)
        stamp = received.isoformat(timespec="milliseconds")
        results, new_records, written = [], [], []
        try:
            for index, (png, digest, label) in enumerate(zip(pngs, digests, labels, strict=True)):
                results.append(StoredDrawing(f"{digest}.png", digest, label, index not in fresh))
                if index not in fresh:
                    continue
                path = folder / f"{digest}.png"
                if not _holds(path, png):  # a file left by an earlier, failed request is reused
                    with atomic_write(path) as handle:
                        handle.write(png)
                    written.append(path)
                new_records.append(
                    DrawingRecord(path.name, label, digest, stamp, digit_digests[index], client, len(png))
                )
            if new_records:
                append_records(folder / MANIFEST_NAME, new_records)
        except BaseException:
            for path in written:  # no file without its manifest line
                path.unlink(missing_ok=True)
            raise
    return results


def _check_quota(
    records: Sequence[DrawingRecord],
    folder: Path,
    client: str,
    new_sizes: Sequence[int],
    now: datetime,
    quota: FeedbackQuota,
) -> None:
    """QuotaExceededError or StorageFullError when storing `new_sizes` more files would pass a cap."""
    since = now - QUOTA_WINDOW
    recent = sum(
        1 for record in records if record.client == client and datetime.fromisoformat(record.received) > since
    )
    if new_sizes and recent + len(new_sizes) > quota.per_client_per_day:
        raise QuotaExceededError(
            f"this client has contributed {recent} drawings in the last 24 hours; the limit is "
            f"{quota.per_client_per_day}: try again later"
        )
    stored = stored_bytes(folder, records)
    if new_sizes and stored + sum(new_sizes) > quota.max_folder_bytes:
        raise StorageFullError(
            f"the feedback folder holds {stored:,} bytes of drawings; its cap is {quota.max_folder_bytes:,}: "
            "contributions are paused until they are reviewed"
        )


def _checked_png(
    index: int, item: object, limits: InputLimits, contract: Callable[[np.ndarray], list[str]] | None
) -> tuple[bytes, str]:
    """One item -> the canonical PNG to store and the SHA-256 of its normalised digit.

    Raises BadInputError naming the item.
    """
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
        digit = digit_from_image(image)  # refuses a blank drawing
    except BadInputError as error:
        raise BadInputError(f"item {index}: {error}") from None
    problems = contract(digit) if contract else []
    if problems:
        raise BadInputError(f"item {index}: the data contract refuses this drawing: {'; '.join(problems)}")
    return _as_png(image), hashlib.sha256(digit.tobytes()).hexdigest()


def _as_png(image: Image.Image) -> bytes:
    """Any decoded image -> lossless PNG of the same pixels (upright, alpha kept), and nothing else."""
    image = ImageOps.exif_transpose(image)  # PNG would drop the EXIF orientation the normaliser applies
    if image.mode not in _PNG_MODES:  # CMYK, YCbCr, LAB, 32-bit float ...
        has_alpha = "A" in image.getbands() or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _refuse_conflicts(digests: Sequence[str], labels: Sequence[int], known: Mapping[str, int]) -> None:
    """BadInputError when an item's digit (or bytes) is stored, or sent earlier in the request, with
    another label."""
    seen = dict(known)
    for index, (digest, label) in enumerate(zip(digests, labels, strict=True)):
        earlier = seen.setdefault(digest, label)
        if earlier != label:
            where = "was already contributed" if digest in known else "is also in this request"
            raise BadInputError(
                f"item {index}: this drawing {where} with label {earlier}, not {label}; "
                "conflicting labels are refused"
            )


def _holds(path: Path, data: bytes) -> bool:
    try:
        return path.read_bytes() == data
    except FileNotFoundError:
        return False
