"""Getting the original files: from a mirror folder (`DIGITOPS_DATA_MIRROR`, laid out as
`<mirror>/<source>/<file>`) or by download into a local cache. Every file's size and SHA-256 are checked
before anything reads it; downloads and extractions are written to a temporary file and renamed only
once verified, so an interrupted or corrupt download never leaves a file that looks complete.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from digitops import __version__
from digitops.data.sources import Archive, RemoteFile, Source
from digitops.errors import DataFileError
from digitops.fingerprint import file_sha256
from digitops.io import atomic_write

MIRROR_ENV = "DIGITOPS_DATA_MIRROR"
_CHUNK = 1 << 20
_TIMEOUT_S = 60


def mirror_from_env(environ: Mapping[str, str] = os.environ) -> Path | None:
    """The mirror folder named by DIGITOPS_DATA_MIRROR, or None when it is unset or empty."""
    value = environ.get(MIRROR_ENV, "").strip()
    if not value:
        return None
    mirror = Path(value).expanduser()
    if not mirror.is_dir():
        raise DataFileError(mirror, f"{MIRROR_ENV} names a folder that does not exist")
    return mirror


def verify_file(path: Path, remote: RemoteFile) -> None:
    """Check a local file against its published size and SHA-256."""
    size = path.stat().st_size
    if size != remote.size:
        raise DataFileError(
            path,
            f"is {size} bytes, expected {remote.size} bytes with sha256 {remote.sha256}: "
            f"truncated or not the original {remote.name}",
        )
    digest = file_sha256(path)
    if digest != remote.sha256:
        raise DataFileError(
            path, f"has sha256 {digest}, expected {remote.sha256}: corrupt or not the original {remote.name}"
        )


def fetch_source_files(
    source: Source, mirror: Path | None, cache: Path, progress: bool = True
) -> dict[str, Path]:
    """Local, verified paths of all of a source's files.

    Args:
        source: the source whose files are wanted.
        mirror: a folder holding `<source>/<file>`; when given, nothing is downloaded and a missing file
            is an error.
        cache: downloads go to `<cache>/<source>/<file>` and are reused on the next call.
        progress: show a progress bar while downloading.

    Returns:
        file name -> path.
    """
    if mirror is not None:
        return {remote.name: _from_mirror(mirror / source.name, remote) for remote in source.files}

    folder = cache / source.name
    missing = []
    for remote in source.files:
        path = folder / remote.name
        if path.exists():
            _verify_cached(path, remote)
        else:
            missing.append(remote)
    for remote in missing:
        if remote.archive is None:
            _download(remote.urls, folder / remote.name, remote.size, remote.sha256, progress)
    for archive in {remote.archive for remote in missing if remote.archive is not None}:
        members = [remote for remote in missing if remote.archive == archive]
        _fetch_from_archive(archive, members, folder, progress)
    return {remote.name: folder / remote.name for remote in source.files}


def _from_mirror(folder: Path, remote: RemoteFile) -> Path:
    path = folder / remote.name
    if not path.is_file():
        raise DataFileError(
            path,
            f"missing from the mirror ({MIRROR_ENV}); expected the original {remote.name}, "
            f"{remote.size} bytes, sha256 {remote.sha256}",
        )
    verify_file(path, remote)
    return path


def _verify_cached(path: Path, remote: RemoteFile) -> None:
    try:
        verify_file(path, remote)
    except DataFileError as error:
        raise DataFileError(path, f"{error.problem}; delete it to download it again") from error


def _fetch_from_archive(archive: Archive, members: Iterable[RemoteFile], folder: Path, progress: bool) -> None:
    """Download `archive` once, extract and verify `members`, then delete the archive."""
    archive_path = folder / archive.name
    if not archive_path.exists():
        _download(archive.urls, archive_path, archive.approx_bytes, None, progress)
    try:
        with zipfile.ZipFile(archive_path) as bundle:
            for remote in members:
                try:
                    source_handle = bundle.open(remote.member)
                except KeyError:
                    raise DataFileError(archive_path, f"has no member {remote.member}") from None
                with source_handle:
                    _copy_verified(source_handle, folder / remote.name, remote.size, remote.sha256, None)
    except (zipfile.BadZipFile, DataFileError) as error:
        archive_path.unlink(missing_ok=True)  # corrupt: the next run downloads it again
        if isinstance(error, DataFileError):
            raise
        raise DataFileError(archive_path, f"not a valid zip archive ({error}); deleted") from error
    archive_path.unlink()


def _download(urls: Iterable[str], dest: Path, size: int, sha256: str | None, progress: bool) -> None:
    """Download the first URL that answers into `dest`, verifying the SHA-256 before the file appears."""
    errors = []
    for url in urls:
        request = urllib.request.Request(url, headers={"User-Agent": f"digitops/{__version__}"})
        try:
            with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
                total = int(response.headers.get("Content-Length") or size)
                bar = tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress)
                with bar:
                    _copy_verified(response, dest, size if sha256 else None, sha256, bar)
            return
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            errors.append(f"{url}: {error}")
    raise DataFileError(
        dest,
        "could not be downloaded (" + "; ".join(errors) + f"); to work offline, set {MIRROR_ENV} "
        "to a folder holding the original files",
    )


def _copy_verified(
    source: BinaryIO, dest: Path, size: int | None, sha256: str | None, bar: tqdm | None
) -> None:
    """Stream `source` into `dest` atomically; a size or SHA-256 mismatch leaves no file behind."""
    digest = hashlib.sha256()
    written = 0
    with atomic_write(dest) as handle:
        while chunk := source.read(_CHUNK):
            handle.write(chunk)
            digest.update(chunk)
            written += len(chunk)
            if bar is not None:
                bar.update(len(chunk))
        if size is not None and written != size:
            raise DataFileError(dest, f"got {written} bytes, expected {size}: incomplete or not the original")
        if sha256 is not None and digest.hexdigest() != sha256:
            raise DataFileError(dest, f"got sha256 {digest.hexdigest()}, expected {sha256}: not the original")
