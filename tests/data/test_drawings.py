"""The `drawings` source: what the service stores comes out of ingest as MNIST-style digits, split by content
hash, and passes the data contract (no official counts or class shares) through validate and split."""

from __future__ import annotations

import hashlib
import json
from functools import partial

import numpy as np
import pytest
import yaml
from PIL import Image

from digitops.config import load_params
from digitops.data.drawings import (
    MANIFEST_NAME,
    DrawingRecord,
    append_records,
    read_drawings,
    split_by_hash,
)
from digitops.data.ingest import SET_ASIDE_NAME, ingest_local_source
from digitops.data.sources import LocalSource, expected_counts, get_source
from digitops.errors import DataFileError
from digitops.fingerprint import image_hashes
from digitops.infer.inputs import InputLimits, digit_from_image, open_image, png_bytes
from digitops.io import load_npz
from digitops.preprocess import normalize_digit
from digitops.serve.feedback import store_drawings
from digitops.split import split_dataset
from digitops.validate import check_sources, digit_problems
from tests.fakes import (
    FOUR_STROKES,
    REPO_ROOT,
    SEVEN_STROKES,
    canvas_rgba,
    draw_strokes,
    interim_arrays,
    off_centre_blob_png,
)

PARAMS = load_params(REPO_ROOT / "params.yaml")
DRAWINGS = get_source("drawings")
LIMITS = InputLimits(max_images=64, max_bytes=1_000_000, max_pixels=1_000_000)
CONTRACT = partial(digit_problems, policy=PARAMS.validate_)


def _ingest(source, folder, test_fraction, max_per_split, seed):
    """ingest_local_source's arrays, for a folder of drawings the contract accepts (none set aside)."""
    arrays, set_aside = ingest_local_source(source, folder, test_fraction, max_per_split, seed, CONTRACT)
    assert set_aside == []
    return arrays


def _canvas_drawings(count: int, seed: int = 0) -> list[tuple[bytes, int]]:
    """`count` distinct canvas drawings (PNG, RGBA, ink in alpha): 7s and 4s in varied shapes, places and
    colours. Each is drawn by its own hand (the strokes' points moved): the store judges duplicates on the
    normalised digit, which the place and colour do not change."""
    rng = np.random.default_rng(seed)
    drawings = []
    for number in range(count):
        model, label = (SEVEN_STROKES, 7) if number % 2 == 0 else (FOUR_STROKES, 4)
        strokes = [
            [(x + int(rng.integers(-12, 13)), y + int(rng.integers(-12, 13))) for x, y in s] for s in model
        ]
        offset = tuple(int(v) for v in rng.integers(-20, 20, size=2))
        colour = tuple(int(v) for v in rng.integers(0, 256, size=3))
        ink = draw_strokes(strokes, width=int(rng.integers(10, 26)), offset=offset)
        drawings.append((png_bytes(Image.fromarray(canvas_rgba(ink, colour))), label))
    return drawings


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A feedback folder holding 40 drawings, stored as the service stores them."""
    path = tmp_path_factory.mktemp("feedback")
    drawings = _canvas_drawings(40)
    for start in range(0, len(drawings), 16):
        store_drawings(drawings[start : start + 16], path, LIMITS)
    return path


def test_drawings_are_a_local_source_without_counts():
    assert isinstance(DRAWINGS, LocalSource) and not DRAWINGS.opt_in
    assert expected_counts(DRAWINGS, 500) is None


def test_stored_drawings_come_out_normalised_with_their_labels(folder):
    drawings = _canvas_drawings(40)
    arrays = _ingest(DRAWINGS, folder, 0.2, None, seed=1)

    assert arrays["images"].shape == (40, 28, 28) and arrays["images"].dtype == np.uint8
    assert arrays["labels"].dtype == np.int64 and arrays["index"].dtype == np.int64
    assert set(arrays["split"]) == {"train", "test"}
    for image, label, index in zip(arrays["images"], arrays["labels"], arrays["index"], strict=True):
        data, expected_label = drawings[index]  # index: position in the manifest, i.e. in arrival order
        assert label == expected_label
        # the same normaliser as the service applies to an upload: no training/serving skew
        service_input = digit_from_image(open_image(data, InputLimits(1, 1_000_000, 1_000_000)))
        np.testing.assert_array_equal(image, service_input)


def test_the_split_is_by_content_hash_and_stable_as_drawings_arrive(folder, tmp_path):
    first = _ingest(DRAWINGS, folder, 0.2, None, seed=1)
    np.testing.assert_array_equal(split_by_hash(image_hashes(first["images"]), 0.2), first["split"])
    assert _ingest(DRAWINGS, folder, 0.2, None, seed=99)["split"].tolist() == first["split"].tolist()

    grown = tmp_path / "grown"  # the same 40 drawings, then 24 more
    drawings = _canvas_drawings(40) + _canvas_drawings(24, seed=5)
    for start in range(0, len(drawings), 16):
        store_drawings(drawings[start : start + 16], grown, LIMITS)
    later = _ingest(DRAWINGS, grown, 0.2, None, seed=1)
    split_of = dict(zip(later["index"].tolist(), later["split"].tolist(), strict=True))
    assert {index: split_of[index] for index in first["index"].tolist()} == dict(
        zip(first["index"].tolist(), first["split"].tolist(), strict=True)
    )
    assert len(later["labels"]) == 64


def test_the_test_fraction_is_about_right():
    hashes = image_hashes(np.random.default_rng(0).integers(0, 256, size=(4000, 4, 4), dtype=np.uint8))
    assert 0.18 < (split_by_hash(hashes, 0.2) == "test").mean() < 0.22
    assert set(split_by_hash(hashes, 0.0)) == {"train"} and set(split_by_hash(hashes, 1.0)) == {"test"}


def test_the_cap_applies_per_split(folder):
    capped = _ingest(DRAWINGS, folder, 0.5, 10, seed=1)
    assert (capped["split"] == "train").sum() == 10 and (capped["split"] == "test").sum() == 10


def test_an_empty_or_missing_folder_gives_zero_digits_that_validate_and_split_accept(tmp_path):
    (tmp_path / "README.md").write_text("no drawings yet")
    for path in (tmp_path, tmp_path / "missing"):
        arrays = _ingest(DRAWINGS, path, 0.2, None, seed=1)
        assert arrays["images"].shape == (0, 28, 28) and arrays["images"].dtype == np.uint8
        assert arrays["labels"].dtype == np.int64 and arrays["index"].dtype == np.int64
    interim = {"mnist": interim_arrays(12, 4, seed=3), "drawings": arrays}
    report = check_sources(interim, {"mnist": None, "drawings": None}, PARAMS.validate_)
    assert report.passed, report.violations
    assert report.sources["drawings"]["train"]["count"] == 0
    splits, manifest = split_dataset(interim, 0.1, seed=0)
    assert len(manifest) == 160 and (manifest["source"] == "drawings").sum() == 0
    assert sum(len(split["labels"]) for split in splits.values()) == 160


def test_the_contract_skips_counts_and_class_shares_for_drawings_only(folder):
    drawings = _ingest(DRAWINGS, folder, 0.2, None, seed=1)  # only 4s and 7s: shares of 0.5
    skewed_official = interim_arrays(12, 4, seed=3)
    skewed_official["labels"][:60] = 7  # 7s: far over max_class_fraction in the official source
    report = check_sources(
        {"drawings": drawings, "usps": skewed_official},
        {"drawings": None, "usps": {"train": 120, "test": 40}},
        PARAMS.validate_,
    )
    assert [problem for problem in report.violations if problem.startswith("drawings")] == []
    assert any(problem.startswith("usps train: class shares outside") for problem in report.violations)
    assert report.sources["drawings"]["train"]["expected"] is None


def test_the_contract_still_catches_a_drawing_that_leaks_into_another_sources_test_set(folder):
    drawings = _ingest(DRAWINGS, folder, 0.2, None, seed=1)
    other = interim_arrays(12, 4, seed=3)
    other["images"][-1] = drawings["images"][np.flatnonzero(drawings["split"] == "train")[0]]
    report = check_sources(
        {"drawings": drawings, "mnist": other}, {"drawings": None, "mnist": None}, PARAMS.validate_
    )
    assert report.violations == [
        "1 images are in both a training and a test split, e.g. mnist test #39",
    ]


def test_drawings_split_with_the_other_sources(folder):
    interim = {
        "mnist": interim_arrays(12, 4, seed=3),
        "drawings": _ingest(DRAWINGS, folder, 0.2, None, seed=1),
    }
    _, manifest = split_dataset(interim, 0.1, seed=0)
    drawn = manifest[manifest["source"] == "drawings"]
    assert len(drawn) == 40 and set(drawn["split"]) <= {"train", "val", "test"}
    assert (drawn["official_split"] == "test").sum() == (drawn["split"] == "test").sum()


def test_a_damaged_or_altered_folder_is_a_clear_error(folder, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in folder.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    records = [json.loads(line) for line in (copy / MANIFEST_NAME).read_text().splitlines()]

    victim = copy / records[3]["file"]
    victim.write_bytes(victim.read_bytes()[:-1] + b"\0")
    with pytest.raises(DataFileError, match=r"do not match the sha256 it is named by"):
        read_drawings(copy)
    victim.unlink()
    with pytest.raises(DataFileError, match=r"missing: manifest.jsonl records it with label 4"):
        read_drawings(copy)

    (copy / MANIFEST_NAME).write_text('{"file": "x.png", "label": 3}\n')
    with pytest.raises(DataFileError, match=r"line 1 is not a drawing record"):
        read_drawings(copy)
    (copy / MANIFEST_NAME).write_text(json.dumps({**records[0], "label": 12}) + "\n")
    with pytest.raises(DataFileError, match=r"line 1: label 12 is not an integer 0-9"):
        read_drawings(copy)


def _copy_with_refused_drawings(folder, destination):
    """A copy of the pool `folder` with two drawings written in by hand, past the checks of upload and
    review: a blob with a line off to one side (the contract refuses it) and a blank image.

    Returns:
        {sha256: label} of the two.
    """
    destination.mkdir()
    for path in folder.iterdir():
        (destination / path.name).write_bytes(path.read_bytes())
    refused = {off_centre_blob_png(): 8, png_bytes(Image.new("L", (64, 64), 255)): 1}
    records = []
    for data, label in refused.items():
        sha256 = hashlib.sha256(data).hexdigest()
        (destination / f"{sha256}.png").write_bytes(data)
        records.append(DrawingRecord(f"{sha256}.png", label, sha256, "2026-01-01T00:00:00Z"))
    append_records(destination / MANIFEST_NAME, records)
    return {record.sha256: record.label for record in records}


def test_a_drawing_the_contract_refuses_is_set_aside_and_named_not_fatal(folder, tmp_path):
    pool = tmp_path / "pool"
    refused = _copy_with_refused_drawings(folder, pool)
    blob, blank = refused
    blob_digit = normalize_digit(Image.open(pool / f"{blob}.png"))
    assert CONTRACT(blob_digit)  # the contract does refuse it: validate would fail with it in interim

    arrays, set_aside = ingest_local_source(DRAWINGS, pool, 0.2, None, 1, CONTRACT)
    assert len(arrays["labels"]) == 40 and sorted(arrays["index"].tolist()) == list(range(40))
    assert blob_digit.tobytes() not in {image.tobytes() for image in arrays["images"]}
    assert [(aside.name, aside.index, aside.label) for aside in set_aside] == [(blob, 40, 8), (blank, 41, 1)]
    assert "centre of mass" in set_aside[0].reasons[0] and "blank" in set_aside[1].reasons[0]
    assert set_aside[0].to_dict()["sha256"] == blob
    interim = {"drawings": arrays, "mnist": interim_arrays(12, 4, seed=3)}
    assert check_sources(interim, {"drawings": None, "mnist": None}, PARAMS.validate_).passed

    # Without the contract only the blank one is left out (it has nothing to normalise).
    unchecked, set_aside = ingest_local_source(DRAWINGS, pool, 0.2, None, 1)
    assert len(unchecked["labels"]) == 41 and [aside.name for aside in set_aside] == [blank]


def test_the_ingest_and_validate_stages_go_on_without_a_refused_drawing_and_report_it(
    folder, tmp_path, mirror, monkeypatch, capsys
):
    """The stages themselves, in a project folder of their own: usps and the pool with a refused drawing."""
    from pipeline import ingest as ingest_stage
    from pipeline import validate as validate_stage

    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["ingest"].update(sources=["usps", "drawings"], max_per_split=50)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "data").mkdir()
    refused = _copy_with_refused_drawings(folder, tmp_path / "data" / "feedback")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DIGITOPS_DATA_MIRROR", str(mirror))

    ingest_stage.main()
    validate_stage.main()  # the contract holds: it would not with the blob in interim

    drawn = load_npz(tmp_path / "data/interim/drawings.npz")
    assert len(drawn["labels"]) == 40
    listed = json.loads((tmp_path / "data/interim" / SET_ASIDE_NAME).read_text())
    report = json.loads((tmp_path / "reports/data_validation.json").read_text())
    assert report["passed"] and report["set_aside"] == listed
    assert {entry["sha256"]: entry["label"] for entry in listed["drawings"]} == refused
    logged = capsys.readouterr().out
    assert all(f"drawings: set aside {sha256}" in logged for sha256 in refused)
