"""Content hashes: of files (SHA-256, as published for the datasets) and of single images."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

_CHUNK = 1 << 20


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def image_hashes(images: np.ndarray) -> np.ndarray:
    """One content hash per image: identical pixels give identical hashes.

    Args:
        images: (N, H, W) uint8.

    Returns:
        (N,) str, 32 hex characters each (BLAKE2b-128 of the raw pixels).
    """
    images = np.ascontiguousarray(images)
    hashes = [hashlib.blake2b(image.tobytes(), digest_size=16).hexdigest() for image in images]
    return np.array(hashes, dtype="U32")
