"""bhmsds: the parser on a small tar written here in the repository's layout, its polarity through ingest's
normaliser, the content-hash split, and the registry's record of the members."""

from __future__ import annotations

import hashlib
import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from digitops.data.bhmsds import COMMIT, download_url, label_of, member_records, read_bhmsds
from digitops.data.fetch import fetch_source_files
from digitops.data.ingest import ingest_source
from digitops.data.sources import BHMSDS, WHOLE, RemoteFile, expected_counts
from digitops.errors import DataFileError
from digitops.preprocess import MNIST_CENTRE, centre_of_mass
from tests.fakes import FOUR_STROKES, SEVEN_STROKES, bhmsds_photo, write_tar

ONE_STROKES = [[(90, 90), (150, 30), (150, 230)]]  # a continental 1: the flag, then the upright
MEMBERS = {
    "symbols/1-0000.png": bhmsds_photo(ONE_STROKES),
    "symbols/4-0000.png": bhmsds_photo(FOUR_STROKES),
    "symbols/7-0000.png": bhmsds_photo(SEVEN_STROKES),
    "symbols/7-0001.png": bhmsds_photo([[(40, 40), (220, 60), (90, 230)]]),
}


def _with_others(members: dict[str, bytes]) -> dict[str, bytes]:
    """The digit members among others of the repository that the parser must leave alone."""
    return {"symbols/plus-0000.png": bhmsds_photo(FOUR_STROKES), **members, "LICENSE": b"MIT License\n"}


def _tiny_source(members: dict[str, bytes]):
    """BHMSDS with only `members` in its registry: path, size and SHA-256 of each."""
    archive = BHMSDS.files[0].archive
    files = tuple(
        RemoteFile(path, len(data), hashlib.sha256(data).hexdigest(), (), archive=archive, member=path)
        for path, data in members.items()
    )
    return replace(BHMSDS, files=files)


def test_reads_members_of_a_tar_with_labels_and_ink_high(tmp_path):
    tar = write_tar(tmp_path / "bhmsds.tar", _with_others(MEMBERS))
    order = ["symbols/7-0001.png", "symbols/1-0000.png", "symbols/4-0000.png"]
    images, labels = read_bhmsds(dict.fromkeys(order, tar))
    assert images.shape == (3, 28, 28) and images.dtype == np.uint8
    assert labels.tolist() == [7, 1, 4] and labels.dtype == np.int64  # in the order asked for
    photo = np.asarray(Image.open(io.BytesIO(MEMBERS["symbols/7-0001.png"])))
    np.testing.assert_array_equal(images[0], 255 - photo)  # dark ink on light paper -> ink high
    assert images[0].max() == 255 - 40 and np.median(images[0]) == 255 - 235


def test_loose_files_read_like_the_tar(tmp_path):
    tar = write_tar(tmp_path / "bhmsds.tar", MEMBERS)
    loose = {}
    for path, data in MEMBERS.items():
        loose[path] = tmp_path / "loose" / path
        loose[path].parent.mkdir(parents=True, exist_ok=True)
        loose[path].write_bytes(data)
    from_tar = read_bhmsds(dict.fromkeys(MEMBERS, tar))
    from_files = read_bhmsds(loose)
    for got, expected in zip(from_files, from_tar, strict=True):
        np.testing.assert_array_equal(got, expected)


def test_ingest_normalises_to_white_on_black_and_splits_by_content_hash(tmp_path):
    source = _tiny_source(MEMBERS)
    write_tar(tmp_path / "mirror" / "bhmsds" / "bhmsds.tar", _with_others(MEMBERS))
    files = fetch_source_files(source, tmp_path / "mirror", tmp_path / "cache", progress=False)
    arrays = ingest_source(source, files, None, seed=1, hash_test_fraction=0.5)
    digits = arrays["images"]  # (4, 28, 28)
    assert digits.shape == (4, 28, 28) and sorted(arrays["labels"].tolist()) == [1, 4, 7, 7]
    for digit in digits:  # white ink on black paper, the ink within a 20x20 box, as MNIST
        rows, cols = np.flatnonzero(digit.any(axis=1)), np.flatnonzero(digit.any(axis=0))
        assert rows[-1] - rows[0] < 20 and cols[-1] - cols[0] < 20 and digit.max() == 255
        assert (digit == 0).mean() > 0.6 and digit[0, 0] == digit[-1, -1] == 0
    np.testing.assert_allclose(centre_of_mass(digits), MNIST_CENTRE, atol=0.5)
    assert sorted(arrays["index"].tolist()) == [0, 1, 2, 3]  # each digit once, by its place in the registry

    again = ingest_source(source, files, None, seed=2, hash_test_fraction=0.5)  # the seed only caps
    by_index = dict(zip(again["index"].tolist(), again["split"].tolist(), strict=True))
    assert by_index == dict(zip(arrays["index"].tolist(), arrays["split"].tolist(), strict=True))
    assert set(ingest_source(source, files, None, 1, hash_test_fraction=0.0)["split"]) == {"train"}
    assert set(ingest_source(source, files, None, 1, hash_test_fraction=1.0)["split"]) == {"test"}
    with pytest.raises(ValueError, match="bhmsds has no official test split: give hash_test_fraction"):
        ingest_source(source, files, None, seed=1)


def _rgb_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (28, 28), (235, 235, 235)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("path", "data", "message"),
    [
        ("symbols/3-0000.png", b"not a png", r"bhmsds\.tar: member symbols/3-0000\.png: not a readable PNG"),
        ("symbols/3-0000.png", _rgb_png(), r"member symbols/3-0000\.png: is a RGB image of 28x28, expected"),
        ("symbols/x-0000.png", MEMBERS["symbols/1-0000.png"], r"member symbols/x-0000\.png: .* not a digit"),
    ],
)
def test_a_bad_member_is_named_with_its_archive(tmp_path, path, data, message):
    tar = write_tar(tmp_path / "bhmsds.tar", {**MEMBERS, path: data})
    with pytest.raises(DataFileError, match=message):
        read_bhmsds(dict.fromkeys([*MEMBERS, path], tar))


def test_a_missing_member_or_a_broken_tar_is_named(tmp_path):
    tar = write_tar(tmp_path / "bhmsds.tar", MEMBERS)
    with pytest.raises(DataFileError, match=r"bhmsds\.tar: has no member symbols/9-0000\.png \(1 of 5"):
        read_bhmsds(dict.fromkeys([*MEMBERS, "symbols/9-0000.png"], tar))
    tar.write_bytes(b"garbage" * 100)
    with pytest.raises(DataFileError, match=r"bhmsds\.tar: not a readable tar archive"):
        read_bhmsds(dict.fromkeys(MEMBERS, tar))


def test_registry_records_every_digit_image_with_its_download_path():
    records = member_records()
    assert len(records) == len(BHMSDS.files) == 15000
    assert [label_of(path) for path, _, _ in records] == [digit for digit in range(10) for _ in range(1500)]
    assert len({sha256 for _, _, sha256 in records}) == 15000  # no two images alike
    first = BHMSDS.files[0]
    assert (first.name, first.member) == ("symbols/0-0000.png", "symbols/0-0000.png")
    assert first.urls == (download_url("symbols/0-0000.png"),)
    assert first.urls[0].endswith(f"/wblachowski/bhmsds/{COMMIT}/symbols/0-0000.png")
    assert first.archive is not None and first.archive.read_in_place and first.archive.urls == ()
    assert expected_counts(BHMSDS, None) == {WHOLE: 15000}
    assert expected_counts(BHMSDS, 300) == {}  # capped per split after the hash split: size not known


@pytest.mark.parametrize(
    "name", ["symbols/10-0000.png", "symbols/7-000.png", "symbols/plus-0000.png", "7-0000.png"]
)
def test_only_digit_images_have_a_label(name):
    with pytest.raises(ValueError, match="is not a digit image of bhmsds"):
        label_of(name)


def test_member_paths_stay_inside_the_cache():
    """The registry's names are repository paths: they must not climb out of the cache folder."""
    for remote in BHMSDS.files:
        assert not Path(remote.name).is_absolute() and ".." not in Path(remote.name).parts
