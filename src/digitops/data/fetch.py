"""Getting the original files: from a mirror folder (`DIGITOPS_DATA_MIRROR`, laid out as
`<mirror>/<source>/<file>`) or by download into a local cache. Every file's size and SHA-256 are checked
before anything reads it; downloads and extractions are written to a temporary file and renamed only
once verified, so an interrupted or corrupt download never leaves a file that looks complete.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
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
_MANY_FILES = 20  # more downloads than this (bhmsds' loose images) share one progress bar


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
        file name -> path: the file itself or, for a member of an archive read in place
        (`Archive.read_in_place`, verified inside it), the archive that holds it.
    """
    mirror_folder = mirror / source.name if mirror is not None else None
    folder = cache / source.name
    paths: dict[str, Path] = {}
    to_extract: list[RemoteFile] = []
    in_place: list[RemoteFile] = []
    to_download: list[RemoteFile] = []
    for remote in source.files:
        if mirror_folder is not None and not _archive_in_mirror(mirror_folder, remote):
            paths[remote.name] = _from_mirror(mirror_folder, remote)
            continue
        if mirror_folder is not None and remote.archive is not None and remote.archive.read_in_place:
            in_place.append(remote)
            continue
        path = paths[remote.name] = folder / remote.name
        if path.exists():
            _verify_cached(path, remote)
        elif remote.archive is not None and (mirror_folder is not None or remote.archive.urls):
            to_extract.append(remote)
        else:  # a file published on its own, or a member of an archive that no one publishes
            to_download.append(remote)
    many = len(to_download) > _MANY_FILES  # then one bar counts files, instead of a bar per file
    for remote in tqdm(to_download, unit="file", desc=source.name, disable=not (progress and many)):
        _download(remote.urls, paths[remote.name], remote.size, remote.sha256, progress and not many)
    for archive in {remote.archive for remote in in_place if remote.archive is not None}:
        assert mirror_folder is not None  # only an archive in the mirror is read in place
        members = [remote for remote in in_place if remote.archive == archive]
        _verify_members(mirror_folder / archive.name, members)
        paths.update({remote.name: mirror_folder / archive.name for remote in members})
    for archive in {remote.archive for remote in to_extract if remote.archive is not None}:
        members = [remote for remote in to_extract if remote.archive == archive]
        if mirror_folder is not None:
            _extract_verified(mirror_folder / archive.name, members, folder, delete_archive=False)
        else:
            archive_path = folder / archive.name
            if not archive_path.exists():
                _download(archive.urls, archive_path, archive.approx_bytes, None, progress)
            _extract_verified(archive_path, members, folder, delete_archive=True)
    return {remote.name: paths[remote.name] for remote in source.files}  # in the registry's order


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


def _verify_members(archive_path: Path, members: Iterable[RemoteFile]) -> None:
    """Check every wanted member of a tar archive against its size and SHA-256, without extracting it.

    Members are matched by path; others are ignored. Raises DataFileError naming the archive and the first
    member that is missing or differs.
    """
    wanted = {remote.member: remote for remote in members}
    seen = set()
    try:
        with tarfile.open(archive_path) as bundle:
            for info in bundle:  # one pass: tarfile's getmember scans the whole list for every name
                remote = wanted.get(info.name)
                if remote is None or not info.isfile():
                    continue
                handle = bundle.extractfile(info)
                data = handle.read() if handle is not None else b""
                digest = hashlib.sha256(data).hexdigest()
                if len(data) != remote.size or digest != remote.sha256:
                    raise DataFileError(
                        archive_path,
                        f"member {info.name} has {len(data)} bytes and sha256 {digest}, expected "
                        f"{remote.size} bytes with sha256 {remote.sha256}: altered or not the original",
                    )
                seen.add(info.name)
    except (tarfile.TarError, OSError, EOFError) as error:
        raise DataFileError(archive_path, f"not a valid tar archive ({error})") from error
    missing = [member for member in wanted if member not in seen]
    if missing:
        raise DataFileError(
            archive_path, f"has no member {missing[0]} ({len(missing)} of the {len(wanted)} wanted missing)"
        )


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
