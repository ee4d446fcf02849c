"""Atomic file and folder writes: a reader sees the old content or the new, never half of one.

Every output of the pipeline is written through these helpers, so a stage that fails (or is killed)
leaves the previous outputs exactly as they were.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np

from digitops.errors import DataFileError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix, so `keras.Model.save` accepts it); on success
    it is renamed over `path`, on any exception removed and `path` left untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp_name)
    try:
        tmp_path.chmod(0o666 & ~_umask())  # mkstemp makes it private; give it an ordinary file's mode
        yield tmp_path
        tmp_path.replace(path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside `path`; on success rename it over `path`.

    On any exception the temporary file is removed and `path` is left untouched.
    """
    with atomic_path(path) as tmp_path, tmp_path.open(mode) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside `path`; on success it replaces `path` as a whole.

    Files that the previous content had and the new one lacks disappear with it (no stale outputs).
    On any exception the temporary folder is removed and `path` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    tmp_path.chmod(0o777 & ~_umask())  # mkdtemp makes it private; give it an ordinary folder's mode
    try:
        yield tmp_path
    except BaseException:
        shutil.rmtree(tmp_path, ignore_errors=True)
        raise
    old_path = None
    if path.exists():
        old_path = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
        path.replace(old_path / path.name)  # two renames: the only window without `path` is tiny
    tmp_path.replace(path)
    if old_path is not None:
        shutil.rmtree(old_path, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Write arrays to a compressed .npz atomically."""
    with atomic_write(path) as handle:
        np.savez_compressed(handle, **arrays)


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read every array of an .npz into memory (no pickles: object arrays are refused).

    Raises:
        DataFileError: the file is missing or not a readable .npz.
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except FileNotFoundError:
        raise DataFileError(path, "missing: run the stage that writes it first (dvc repro)") from None
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise DataFileError(path, f"not a readable .npz file ({error})") from error


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    with atomic_write(path, "w") as handle:
        handle.write(text)


def write_json(path: str | os.PathLike, data: object) -> None:
    """Write `data` as indented JSON, atomically."""
    write_text(path, json.dumps(data, indent=2) + "\n")
