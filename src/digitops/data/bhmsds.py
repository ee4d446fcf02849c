"""BHMSDS, the Basic Handwritten Math Symbols Dataset (W. Błachowski, 2019): its ten digit classes only.

The published files are the repository's `symbols/<digit>-<id>.png` at a pinned commit (`COMMIT`): 1,500
photographed pen digits per class, 28x28 8-bit grayscale PNG, dark ink on light grey paper, filling the
frame. The label is the file name's first character. A mirror keeps them as one tar made with
`git archive` (../shared/datasets/bhmsds/SOURCE.md), read in place; a download fetches the loose files.
The registry names each file by its path in the repository, which is also its path inside the tar.

There is no official test split and only a couple of writers: ingest assigns each digit to train or test
by the content hash of its normalised image (`digitops.data.ingest`).
"""

from __future__ import annotations

import io
import re
import tarfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from PIL import Image

from digitops.errors import DataFileError

REPOSITORY = "wblachowski/bhmsds"
COMMIT = "07d208e41923b061e338c241e59daacdd2752d53"
BHMSDS_SIZE = 28
_MEMBER_PATH = re.compile(r"symbols/([0-9])-[0-9]{4}\.png")


def member_records() -> list[tuple[str, int, str]]:
    """The registry's record of the digit images: (path in the repository, size in bytes, SHA-256)."""
    from digitops.data.bhmsds_members import MEMBERS  # long: loaded only when the source is used

    records = []
    for line in MEMBERS.splitlines():
        path, size, sha256 = line.split()
        records.append((path, int(size), sha256))
    return records


def download_url(path: str) -> str:
    """Where the repository serves one file at the pinned commit, byte for byte."""
    return f"https://raw.githubusercontent.com/{REPOSITORY}/{COMMIT}/{path}"


def label_of(path: str) -> int:
    """The digit a member holds, from its name `symbols/<digit>-<id>.png`."""
    match = _MEMBER_PATH.fullmatch(path)
    if match is None:
        raise ValueError(f"{path!r} is not a digit image of bhmsds (symbols/<digit>-<id>.png)")
    return int(match.group(1))


def read_bhmsds(files: Mapping[str, Path]) -> tuple[np.ndarray, np.ndarray]:
    """Read bhmsds digit images, verified beforehand by the fetch step.

    Args:
        files: path in the repository ("symbols/7-0042.png") -> the loose file, or a tar of the repository
            that holds it as a member of that path (each tar is read once; its other members are ignored).
            The result keeps this order.

    Returns:
        images (N, 28, 28) uint8, white ink on black (inverted from the photographs), and labels (N,) int64.

    Raises:
        DataFileError: a file or archive is unreadable, an archive lacks a member, or an image is not a
            28x28 grayscale PNG (names the file, or the archive and the member).
    """
    contents: dict[str, tuple[bytes, str]] = {}  # path -> (PNG bytes, where, for errors)
    in_archive: dict[Path, list[str]] = {}
    for path, local in files.items():
        if Path(local).suffix == ".tar":
            in_archive.setdefault(Path(local), []).append(path)
        else:
            contents[path] = (Path(local).read_bytes(), str(local))
    for archive, paths in in_archive.items():
        for path, data in _read_members(archive, paths).items():
            contents[path] = (data, f"{archive}: member {path}")
    return _decode_all((path, *contents[path]) for path in files)


def _read_members(archive: Path, paths: list[str]) -> dict[str, bytes]:
    """The bytes of the members `paths` of a tar, in one pass over it."""
    wanted, found = set(paths), {}
    try:
        with tarfile.open(archive) as bundle:
            for info in bundle:  # tarfile's getmember would scan the whole list for every name
                member = bundle.extractfile(info) if info.isfile() and info.name in wanted else None
                if member is not None:
                    found[info.name] = member.read()
    except (tarfile.TarError, OSError, EOFError) as error:
        raise DataFileError(archive, f"not a readable tar archive ({error})") from error
    missing = [path for path in paths if path not in found]
    if missing:
        raise DataFileError(archive, f"has no member {missing[0]} ({len(missing)} of {len(paths)} missing)")
    return found


def _decode_all(members: Iterable[tuple[str, bytes, str]]) -> tuple[np.ndarray, np.ndarray]:
    """(path, PNG bytes, name for errors) -> images (N, 28, 28) uint8 ink high, labels (N,) int64."""
    images, labels = [], []
    for path, data, where in members:
        try:
            labels.append(label_of(path))
        except ValueError as error:
            raise DataFileError(where, str(error)) from None
        images.append(_decode(data, where))
    if not images:
        raise DataFileError("bhmsds", "holds no digit images")
    return np.stack(images), np.array(labels, dtype=np.int64)


def _decode(data: bytes, where: str) -> np.ndarray:
    """One PNG -> (28, 28) uint8 with the ink high: the photographs are dark ink on light paper."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            mode, size = image.mode, image.size
            pixels = np.asarray(image)
    except Exception as error:  # Pillow raises many kinds on a damaged file
        raise DataFileError(where, f"not a readable PNG ({error})") from None
    if mode != "L" or size != (BHMSDS_SIZE, BHMSDS_SIZE):
        raise DataFileError(where, f"is a {mode} image of {size[0]}x{size[1]}, expected grayscale (L) 28x28")
    return 255 - pixels  # ink high, as every parser returns it; the normaliser then frames it
