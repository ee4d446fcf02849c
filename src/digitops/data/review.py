"""Review of contributed drawings: they wait in quarantine until a person accepts them into the pool.

    <feedback>/incoming/   where the service stores contributions (`digitops.serve.feedback`): quarantine
    <feedback>/            the pool: what the `drawings` source ingests (`digitops.data.drawings`)

Both folders have the same format (one PNG per drawing, `manifest.jsonl`). `digitops drawings` runs these:
`list` and `sheet` show what waits; `accept` moves drawings into the pool, `reject` deletes them from
quarantine; `remove --client` withdraws everything one sender contributed, pooled or not. Each step holds
the folders' locks (quarantine first, then the pool), so it is safe while the service keeps storing; the
manifests are rewritten whole (compacted), atomically, without the drawings that left them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from digitops.data.drawings import (
    LOCK_NAME,
    MANIFEST_NAME,
    DrawingRecord,
    append_records,
    exclusive_lock,
    read_manifest,
    rewrite_manifest,
)
from digitops.errors import DigitopsError
from digitops.io import atomic_path

INCOMING = "incoming"
SHEET_CELL = 56  # px per drawing in the contact sheet (the 28x28 digit at twice its size)
SHEET_COLUMNS = 16


def incoming_dir(feedback_folder: Path) -> Path:
    """Where the service stores contributions until they are reviewed."""
    return Path(feedback_folder) / INCOMING


@dataclass(frozen=True)
class ReviewResult:
    moved: list[DrawingRecord]  # accepted into the pool, rejected, or removed
    refused: list[tuple[DrawingRecord, str]]  # left where they were, with the reason


def waiting(feedback_folder: Path) -> list[DrawingRecord]:
    """The drawings in quarantine, in the order they arrived."""
    return read_manifest(incoming_dir(feedback_folder))


def select(records: Iterable[DrawingRecord], prefixes: Iterable[str] = (), client: str | None = None):
    """The records whose SHA-256 starts with one of `prefixes` (at least 8 characters each) or that
    `client` sent.

    Raises:
        DigitopsError: a prefix is shorter than 8 characters, or matches no record.
    """
    records = list(records)
    chosen = {record.sha256 for record in records if client is not None and record.client == client}
    for prefix in prefixes:
        if len(prefix) < 8:
            raise DigitopsError(f"{prefix!r}: give at least 8 characters of the drawing's sha256")
        matches = {record.sha256 for record in records if record.sha256.startswith(prefix)}
        if not matches:
            raise DigitopsError(f"{prefix!r}: no such drawing in quarantine (`digitops drawings list`)")
        chosen |= matches
    return [record for record in records if record.sha256 in chosen]


def accept(feedback_folder: Path, chosen: Callable[[list[DrawingRecord]], list[DrawingRecord]]):
    """Move the drawings `chosen` picks from quarantine into the pool.

    A drawing whose digit the pool already holds with another label is refused (left in quarantine, with
    the reason); one it holds with the same label leaves quarantine without a second copy in the pool.
    """
    pool, incoming = Path(feedback_folder), incoming_dir(feedback_folder)
    incoming.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(incoming / LOCK_NAME), exclusive_lock(pool / LOCK_NAME):
        waiting_records = read_manifest(incoming)
        pooled = read_manifest(pool)
        labels = {record.digit_sha256 or record.sha256: record.label for record in pooled}
        moved, refused, new = [], [], []
        for record in chosen(waiting_records):
            key = record.digit_sha256 or record.sha256
            if key in labels and labels[key] != record.label:
                refused.append((record, f"the pool holds this digit with label {labels[key]}"))
                continue
            if key not in labels:
                (incoming / record.file).replace(pool / record.file)  # same file system: a rename
                new.append(record)
                labels[key] = record.label
            moved.append(record)
        if new:
            append_records(pool / MANIFEST_NAME, new)  # before quarantine forgets them: never lost
        _forget(incoming, waiting_records, moved)
        _delete_files(incoming, [record for record in moved if record not in new])  # the pool had them
    return ReviewResult(moved, refused)


def reject(feedback_folder: Path, chosen: Callable[[list[DrawingRecord]], list[DrawingRecord]]):
    """Delete the drawings `chosen` picks from quarantine."""
    incoming = incoming_dir(feedback_folder)
    incoming.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(incoming / LOCK_NAME):
        waiting_records = read_manifest(incoming)
        removed = chosen(waiting_records)
        _forget(incoming, waiting_records, removed)
        _delete_files(incoming, removed)
    return ReviewResult(removed, [])


def remove_client(feedback_folder: Path, client: str) -> ReviewResult:
    """Withdraw every drawing `client` sent, from quarantine and from the pool."""
    pool, incoming = Path(feedback_folder), incoming_dir(feedback_folder)
    incoming.mkdir(parents=True, exist_ok=True)
    removed: list[DrawingRecord] = []
    with exclusive_lock(incoming / LOCK_NAME), exclusive_lock(pool / LOCK_NAME):
        for folder in (incoming, pool):
            records = read_manifest(folder)
            theirs = [record for record in records if record.client == client]
            _forget(folder, records, theirs)
            _delete_files(folder, theirs)
            removed += theirs
    return ReviewResult(removed, [])


def contact_sheet(feedback_folder: Path, records: list[DrawingRecord], out: Path) -> Path:
    """A PNG of the drawings as the model sees them (normalised, 28x28 at twice the size), each with its
    label and the first characters of its sha256, for a person to check the labels at a glance."""
    from digitops.infer.inputs import digit_from_image  # the normaliser the service applies

    incoming = incoming_dir(feedback_folder)
    rows = max(1, math.ceil(len(records) / SHEET_COLUMNS))
    sheet = Image.new("L", (SHEET_COLUMNS * SHEET_CELL, rows * (SHEET_CELL + 14)), 255)
    draw = ImageDraw.Draw(sheet)
    for position, record in enumerate(records):
        with Image.open(incoming / record.file) as image:
            digit = digit_from_image(image)  # (28, 28) uint8, white ink on black
        tile = Image.fromarray(255 - np.asarray(digit)).resize(
            (SHEET_CELL, SHEET_CELL), Image.Resampling.NEAREST
        )
        x, y = (position % SHEET_COLUMNS) * SHEET_CELL, (position // SHEET_COLUMNS) * (SHEET_CELL + 14)
        sheet.paste(tile, (x, y))
        draw.text((x + 2, y + SHEET_CELL), f"{record.label} {record.sha256[:6]}", fill=0)
    with atomic_path(out) as tmp_path:
        sheet.save(tmp_path, format="PNG")
    return Path(out)


def _forget(folder: Path, records: list[DrawingRecord], leaving: list[DrawingRecord]) -> None:
    """Rewrite `folder`'s manifest without `leaving` (nothing when none leave)."""
    gone = {record.sha256 for record in leaving}
    if gone:
        rewrite_manifest(folder, [record for record in records if record.sha256 not in gone])


def _delete_files(folder: Path, records: list[DrawingRecord]) -> None:
    for record in records:
        (folder / record.file).unlink(missing_ok=True)
