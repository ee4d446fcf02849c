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
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from digitops import __version__
from digitops.data.sources import RemoteFile, Source
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
            is an error. A file published inside an archive may also be taken from the archive itself
            (`<mirror>/emnist-digits/gzip.zip`): it is extracted into the cache, the mirror is not touched.
        cache: downloads and extractions go to `<cache>/<source>/<file>` and are reused on the next call.
        progress: show a progress bar while downloading.

    Returns:
        file name -> path.
    """
    mirror_folder = mirror / source.name if mirror is not None else None
    folder = cache / source.name
    paths: dict[str, Path] = {}
    to_extract: list[RemoteFile] = []
    for remote in source.files:
        if mirror_folder is not None and not _archive_in_mirror(mirror_folder, remote):
            paths[remote.name] = _from_mirror(mirror_folder, remote)
            continue
        path = paths[remote.name] = folder / remote.name
        if path.exists():
            _verify_cached(path, remote)
        elif remote.archive is not None:
            to_extract.append(remote)
        else:
            _download(remote.urls, path, remote.size, remote.sha256, progress)
    for archive in {remote.archive for remote in to_extract if remote.archive is not None}:
        members = [remote for remote in to_extract if remote.archive == archive]
        if mirror_folder is not None:
            _extract_verified(mirror_folder / archive.name, members, folder, delete_archive=False)
        else:
            archive_path = folder / archive.name
            if not archive_path.exists():
                _download(archive.urls, archive_path, archive.approx_bytes, None, progress)
            _extract_verified(archive_path, members, folder, delete_archive=True)
    return paths


def _archive_in_mirror(mirror_folder: Path, remote: RemoteFile) -> bool:
    """True when the mirror lacks the file itself but holds the archive it is published in."""
    return (
        remote.archive is not None
        and not (mirror_folder / remote.name).exists()
        and (mirror_folder / remote.archive.name).is_file()
    )


def _from_mirror(folder: Path, remote: RemoteFile) -> Path:
    path = folder / remote.name
    if not path.is_file():
        alternative = f" (or the archive {remote.archive.name} that holds it)" if remote.archive else ""
        raise DataFileError(
            path,
            f"missing from the mirror ({MIRROR_ENV}); expected the original {remote.name}{alternative}, "
            f"{remote.size} bytes, sha256 {remote.sha256}",
        )
    verify_file(path, remote)
    return path


def _verify_cached(path: Path, remote: RemoteFile) -> None:
    try:
        verify_file(path, remote)
    except DataFileError as error:
        raise DataFileError(path, f"{error.problem}; delete it to download it again") from error


def _extract_verified(
    archive_path: Path, members: Iterable[RemoteFile], folder: Path, delete_archive: bool
) -> None:
    """Extract `members` of a zip archive into `folder`, verifying each; then delete a downloaded archive.

    A corrupt downloaded archive is deleted too, so that the next run downloads it again.
    """
    try:
        with zipfile.ZipFile(archive_path) as bundle:
            for remote in members:
                try:
                    member = bundle.open(remote.member)
                except KeyError:
                    raise DataFileError(archive_path, f"has no member {remote.member}") from None
                with member:
                    _copy_verified(member, folder / remote.name, remote.size, remote.sha256, None)
    # A damaged zip can fail in many ways inside zipfile and zlib; each becomes one clear error.
    except (
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
        OSError,
        NotImplementedError,
        ValueError,
        DataFileError,
    ) as error:
        if delete_archive:
            archive_path.unlink(missing_ok=True)
        if isinstance(error, DataFileError):
            raise
        raise DataFileError(archive_path, f"not a valid zip archive ({error})") from error
    if delete_archive:
        archive_path.unlink()


def _download(urls: Iterable[str], dest: Path, size: int, sha256: str | None, progress: bool) -> None:
    """Download the first URL that serves the right file into `dest`; it appears only once verified."""
    errors = []
    for url in urls:  # the next URL is tried when one fails or serves something else (an error page)
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
        except DataFileError as error:
            errors.append(f"{url}: {error.problem}")
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
