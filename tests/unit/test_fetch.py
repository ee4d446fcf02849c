from __future__ import annotations

import hashlib
import shutil
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from digitops.data.fetch import fetch_source_files, mirror_from_env
from digitops.data.sources import BHMSDS, EMNIST_DIGITS, WHOLE, Archive, RemoteFile, Source
from digitops.errors import DataFileError
from digitops.preprocess import normalize_digit
from tests.fakes import (
    FOUR_STROKES,
    SEVEN_STROKES,
    bhmsds_photo,
    draw_strokes,
    free_port,
    write_idx,
    write_tar,
)


def _remote(path: Path, **kwargs) -> RemoteFile:
    data = path.read_bytes()
    return RemoteFile(path.name, len(data), hashlib.sha256(data).hexdigest(), **kwargs)


def _source(*files: RemoteFile) -> Source:
    return Source(
        name="tiny",
        description="test",
        files=files,
        parse=lambda paths: {},
        expected_counts={},
        mnist_format=True,
    )


@pytest.fixture
def tiny_file(tmp_path) -> Path:
    return write_idx(tmp_path / "made" / "labels-idx1-ubyte.gz", np.arange(10, dtype=np.uint8))


def test_mirror_env(tmp_path):
    assert mirror_from_env({}) is None
    assert mirror_from_env({"DIGITOPS_DATA_MIRROR": str(tmp_path)}) == tmp_path
    with pytest.raises(DataFileError, match="names a folder that does not exist"):
        mirror_from_env({"DIGITOPS_DATA_MIRROR": str(tmp_path / "nowhere")})


def test_mirror_file_is_verified(tmp_path, tiny_file):
    mirror = tmp_path / "mirror"
    (mirror / "tiny").mkdir(parents=True)
    copy = mirror / "tiny" / tiny_file.name
    copy.write_bytes(tiny_file.read_bytes())
    source = _source(_remote(tiny_file))
    assert fetch_source_files(source, mirror, tmp_path / "cache") == {tiny_file.name: copy}

    data = bytearray(copy.read_bytes())
    data[20] ^= 0x01  # one flipped bit, same size
    copy.write_bytes(bytes(data))
    with pytest.raises(DataFileError, match=rf"{tiny_file.name}: has sha256 [0-9a-f]{{64}}, expected"):
        fetch_source_files(source, mirror, tmp_path / "cache")

    copy.write_bytes(bytes(data[:-3]))
    with pytest.raises(DataFileError, match="truncated or not the original"):
        fetch_source_files(source, mirror, tmp_path / "cache")

    copy.unlink()
    with pytest.raises(DataFileError, match=r"missing from the mirror .* sha256 [0-9a-f]{64}"):
        fetch_source_files(source, mirror, tmp_path / "cache")
    assert not (tmp_path / "cache").exists()  # a mirror is never copied or downloaded around


def test_download_is_verified_cached_and_reused(tmp_path, tiny_file, http_server):
    (http_server.root / tiny_file.name).write_bytes(tiny_file.read_bytes())
    dead_url = f"http://127.0.0.1:{free_port()}/{tiny_file.name}"
    source = _source(_remote(tiny_file, urls=(dead_url, f"{http_server.url}/{tiny_file.name}")))
    cache = tmp_path / "cache"
    paths = fetch_source_files(source, None, cache, progress=False)
    assert paths[tiny_file.name].read_bytes() == tiny_file.read_bytes()
    fetch_source_files(source, None, cache, progress=False)
    assert http_server.requests == [f"/{tiny_file.name}"]  # the second call used the cache


def test_download_with_wrong_checksum_leaves_nothing(tmp_path, tiny_file, http_server):
    served = http_server.root / tiny_file.name
    data = bytearray(tiny_file.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other content
    served.write_bytes(bytes(data))
    source = _source(_remote(tiny_file, urls=(f"{http_server.url}/{tiny_file.name}",)))
    cache = tmp_path / "cache"
    with pytest.raises(DataFileError, match=r"expected [0-9a-f]{64}: not the original"):
        fetch_source_files(source, None, cache, progress=False)
    assert list((cache / "tiny").iterdir()) == []  # no file, no temporary left behind


def test_unreachable_download_says_how_to_work_offline(tmp_path, tiny_file):
    source = _source(_remote(tiny_file, urls=(f"http://127.0.0.1:{free_port()}/x.gz",)))
    with pytest.raises(DataFileError, match=r"could not be downloaded .* set DIGITOPS_DATA_MIRROR"):
        fetch_source_files(source, None, tmp_path / "cache", progress=False)


def test_corrupt_cached_file_is_reported(tmp_path, tiny_file):
    cached = tmp_path / "cache" / "tiny" / tiny_file.name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x" * tiny_file.stat().st_size)
    with pytest.raises(DataFileError, match="delete it to download it again"):
        fetch_source_files(_source(_remote(tiny_file)), None, tmp_path / "cache", progress=False)


def _emnist_like(tmp_path: Path, url: str) -> tuple[Source, Path, np.ndarray]:
    """EMNIST-digits' real layout (members under gzip/ in one zip, images transposed), with tiny files."""
    seven = normalize_digit(draw_strokes(SEVEN_STROKES))
    made = tmp_path / "made"
    images = np.stack([seven, seven[:, ::-1]])  # (2, 28, 28)
    labels = np.array([7, 7], np.uint8)
    files = {
        "emnist-digits-train-images-idx3-ubyte.gz": images.transpose(0, 2, 1),
        "emnist-digits-train-labels-idx1-ubyte.gz": labels,
        "emnist-digits-test-images-idx3-ubyte.gz": images[:1].transpose(0, 2, 1),
        "emnist-digits-test-labels-idx1-ubyte.gz": labels[:1],
    }
    archive_path = tmp_path / "www" / "gzip.zip"
    archive_path.parent.mkdir(exist_ok=True)
    with zipfile.ZipFile(archive_path, "w") as bundle:
        for name, array in files.items():
            bundle.write(write_idx(made / name, array), f"gzip/{name}")
        bundle.writestr("gzip/emnist-letters-train-images-idx3-ubyte.gz", b"not wanted")
    archive = Archive("gzip.zip", (url,), approx_bytes=archive_path.stat().st_size)
    remotes = tuple(_remote(made / name, archive=archive, member=f"gzip/{name}") for name in files)
    return replace(EMNIST_DIGITS, files=remotes), archive_path, images


def test_emnist_archive_is_downloaded_once_extracted_verified_and_deleted(tmp_path, http_server):
    source, _, images = _emnist_like(tmp_path, f"{http_server.url}/gzip.zip")
    cache = tmp_path / "cache"
    paths = fetch_source_files(source, None, cache, progress=False)
    assert sorted(p.name for p in (cache / "emnist-digits").iterdir()) == sorted(
        paths
    )  # no archive, no letters
    parsed = source.parse(paths)
    np.testing.assert_array_equal(parsed["train"][0], images)  # orientation fixed
    assert parsed["train"][1].tolist() == [7, 7] and len(parsed["test"][1]) == 1
    fetch_source_files(source, None, cache, progress=False)
    assert http_server.requests == ["/gzip.zip"]


def test_emnist_archive_with_a_corrupt_member_is_deleted(tmp_path, http_server):
    source, archive_path, _ = _emnist_like(tmp_path, f"{http_server.url}/gzip.zip")
    bad = replace(source.files[1], sha256="0" * 64)
    source = replace(source, files=(source.files[0], bad, *source.files[2:]))
    cache = tmp_path / "cache"
    with pytest.raises(DataFileError, match=r"emnist-digits-train-labels-idx1-ubyte\.gz: got sha256"):
        fetch_source_files(source, None, cache, progress=False)
    assert sorted(p.name for p in (cache / "emnist-digits").iterdir()) == [source.files[0].name]
    archive_path.write_bytes(b"not a zip at all")
    (cache / "emnist-digits" / source.files[0].name).unlink()
    with pytest.raises(DataFileError, match="not a valid zip archive"):
        fetch_source_files(source, None, cache, progress=False)
    assert list((cache / "emnist-digits").iterdir()) == []


def test_a_url_serving_the_wrong_file_falls_back_to_the_next(tmp_path, tiny_file, http_server):
    (http_server.root / "error.html").write_text("<html>moved</html>")
    (http_server.root / tiny_file.name).write_bytes(tiny_file.read_bytes())
    urls = (f"{http_server.url}/error.html", f"{http_server.url}/{tiny_file.name}")
    paths = fetch_source_files(
        _source(_remote(tiny_file, urls=urls)), None, tmp_path / "cache", progress=False
    )
    assert paths[tiny_file.name].read_bytes() == tiny_file.read_bytes()
    only_wrong = _source(_remote(tiny_file, urls=urls[:1]))
    with pytest.raises(DataFileError, match=r"error\.html: got 18 bytes, expected \d+"):
        fetch_source_files(only_wrong, None, tmp_path / "other-cache", progress=False)


def test_emnist_members_can_come_from_the_archive_in_a_mirror(tmp_path):
    source, archive_path, images = _emnist_like(tmp_path, "http://127.0.0.1:9/unused")
    mirror = tmp_path / "mirror"
    (mirror / "emnist-digits").mkdir(parents=True)
    mirrored = mirror / "emnist-digits" / "gzip.zip"
    mirrored.write_bytes(archive_path.read_bytes())
    paths = fetch_source_files(source, mirror, tmp_path / "cache", progress=False)
    assert all(path.parent == tmp_path / "cache" / "emnist-digits" for path in paths.values())
    np.testing.assert_array_equal(source.parse(paths)["train"][0], images)
    assert mirrored.read_bytes() == archive_path.read_bytes()  # the mirror is read, never changed


def test_every_damaged_archive_byte_gives_a_clear_error_or_verified_files(tmp_path):
    """Flip each byte of the archive in turn: zipfile and zlib fail in many ways, all must surface as
    DataFileError; where nothing notices the damage (a timestamp, say), the members still verify."""
    source, archive_path, _ = _emnist_like(tmp_path, "http://127.0.0.1:9/unused")
    original = archive_path.read_bytes()
    mirrored = tmp_path / "mirror" / "emnist-digits" / "gzip.zip"
    mirrored.parent.mkdir(parents=True)
    failures = 0
    for position in range(0, len(original), 4):  # every 4th byte: headers, directory and data alike
        damaged = bytearray(original)
        damaged[position] ^= 0x5A
        mirrored.write_bytes(bytes(damaged))
        cache = tmp_path / "cache"
        shutil.rmtree(cache, ignore_errors=True)
        try:
            paths = fetch_source_files(source, tmp_path / "mirror", cache, progress=False)
        except DataFileError:
            failures += 1
            assert list((cache / "emnist-digits").glob("*.gz")) == [] or all(
                hashlib.sha256(p.read_bytes()).hexdigest() in {r.sha256 for r in source.files}
                for p in (cache / "emnist-digits").glob("*.gz")
            )
        else:
            assert {p.name for p in paths.values()} == {r.name for r in source.files}
    assert failures > len(original) // 8


def _bhmsds_like() -> tuple[Source, dict[str, bytes]]:
    """BHMSDS with three digit images in its registry, and their bytes."""
    members = {
        "symbols/1-0000.png": bhmsds_photo([[(90, 90), (150, 30), (150, 230)]]),
        "symbols/4-0000.png": bhmsds_photo(FOUR_STROKES),
        "symbols/7-0000.png": bhmsds_photo(SEVEN_STROKES),
    }
    archive = BHMSDS.files[0].archive
    dead_url = f"http://127.0.0.1:{free_port()}"  # replaced where a test serves the files
    remotes = tuple(
        RemoteFile(path, len(data), hashlib.sha256(data).hexdigest(), (f"{dead_url}/{path}",), archive, path)
        for path, data in members.items()
    )
    return replace(BHMSDS, files=remotes), members


def test_tar_members_in_a_mirror_are_verified_and_read_in_place(tmp_path):
    source, members = _bhmsds_like()
    tar = write_tar(tmp_path / "mirror" / "bhmsds" / "bhmsds.tar", {"LICENSE": b"MIT\n", **members})
    paths = fetch_source_files(source, tmp_path / "mirror", tmp_path / "cache", progress=False)
    assert paths == dict.fromkeys(members, tar)  # every member's path is the archive's
    assert not (tmp_path / "cache").exists()  # nothing extracted
    assert source.parse(paths)[WHOLE][1].tolist() == [1, 4, 7]


def test_a_tampered_tar_member_is_refused_naming_it_and_the_archive(tmp_path):
    source, members = _bhmsds_like()
    mirror_tar = tmp_path / "mirror" / "bhmsds" / "bhmsds.tar"
    tampered = bytearray(members["symbols/4-0000.png"])
    tampered[-20] ^= 0x01  # one flipped bit, same size
    write_tar(mirror_tar, {**members, "symbols/4-0000.png": bytes(tampered)})
    with pytest.raises(DataFileError, match=r"member symbols/4-0000\.png has \d+ bytes and sha256") as error:
        fetch_source_files(source, tmp_path / "mirror", tmp_path / "cache", progress=False)
    assert error.value.path == str(mirror_tar) and "altered or not the original" in str(error.value)

    write_tar(mirror_tar, {path: data for path, data in members.items() if "7-" not in path})
    with pytest.raises(DataFileError, match=r"bhmsds\.tar: has no member symbols/7-0000\.png \(1 of the 3"):
        fetch_source_files(source, tmp_path / "mirror", tmp_path / "cache", progress=False)
    mirror_tar.write_bytes(b"not a tar" * 200)
    with pytest.raises(DataFileError, match=r"bhmsds\.tar: not a valid tar archive"):
        fetch_source_files(source, tmp_path / "mirror", tmp_path / "cache", progress=False)
    mirror_tar.unlink()
    with pytest.raises(DataFileError, match=r"missing from the mirror .* \(or the archive bhmsds\.tar"):
        fetch_source_files(source, tmp_path / "mirror", tmp_path / "cache", progress=False)


def test_members_of_an_unpublished_archive_are_downloaded_one_by_one(tmp_path, http_server):
    source, members = _bhmsds_like()
    for path, data in members.items():
        (http_server.root / path).parent.mkdir(parents=True, exist_ok=True)
        (http_server.root / path).write_bytes(data)
    source = replace(
        source, files=tuple(replace(r, urls=(f"{http_server.url}/{r.name}",)) for r in source.files)
    )
    cache = tmp_path / "cache"
    paths = fetch_source_files(source, None, cache, progress=False)
    assert paths == {path: cache / "bhmsds" / path for path in members}
    assert sorted(http_server.requests) == sorted(f"/{path}" for path in members)
    assert source.parse(paths)[WHOLE][1].tolist() == [1, 4, 7]
    fetch_source_files(source, None, cache, progress=False)
    assert len(http_server.requests) == 3  # the second call used the verified cache

    (cache / "bhmsds" / "symbols" / "4-0000.png").write_bytes(b"altered")
    with pytest.raises(DataFileError, match=r"4-0000\.png: is 7 bytes, .* delete it to download it again"):
        fetch_source_files(source, None, cache, progress=False)
