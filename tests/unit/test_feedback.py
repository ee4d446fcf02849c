"""Contributed drawings: checked, stored atomically, once (judged on the normalised digit), within each
client's quota and the folder's cap, and safely from several processes at once."""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from digitops.config import load_params
from digitops.data.drawings import MANIFEST_NAME, read_manifest
from digitops.infer.inputs import BadInputError, InputLimits, png_bytes
from digitops.serve.feedback import (
    DEFAULT_FEEDBACK_DIR,
    FEEDBACK_DIR_ENV,
    FeedbackQuota,
    QuotaExceededError,
    StorageFullError,
    StoredDrawing,
    feedback_dir,
    store_drawings,
)
from tests.fakes import (
    FOUR_STROKES,
    REPO_ROOT,
    SEVEN_STROKES,
    canvas_rgba,
    draw_strokes,
    jittered,
    jittered_canvas_pngs,
    off_centre_blob_png,
)

LIMITS = InputLimits(max_images=4, max_bytes=200_000, max_pixels=600 * 600)


def _canvas_png(strokes, offset=(0, 0), colour=(0, 0, 0)) -> bytes:
    """A drawing as the page sends it: a PNG of an RGBA canvas, the ink in alpha."""
    return png_bytes(Image.fromarray(canvas_rgba(draw_strokes(strokes, offset=offset), colour)))


SEVEN = _canvas_png(SEVEN_STROKES)
FOUR = _canvas_png(FOUR_STROKES)


def _contents(folder: Path) -> dict[str, bytes]:
    """Every file in the folder (temporaries included) -> its bytes; the lock file is not content."""
    if not folder.exists():
        return {}
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.name != ".lock"}


def _lines(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / MANIFEST_NAME).read_text().splitlines()]


def _pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGBA"))


def test_a_drawing_is_stored_as_a_canonical_png_with_one_manifest_line(tmp_path):
    folder = tmp_path / "feedback"  # created on first use

    stored = store_drawings([(SEVEN + b"junk after the image's end" * 1000, 7)], folder, LIMITS, "10.0.0.5")

    digest = stored[0].sha256
    assert stored == [StoredDrawing(file=f"{digest}.png", sha256=digest, label=7, duplicate=False)]
    kept = (folder / f"{digest}.png").read_bytes()
    assert b"junk" not in kept and hashlib.sha256(kept).hexdigest() == digest
    np.testing.assert_array_equal(_pixels(kept), _pixels(SEVEN))  # the pixels, and nothing else
    [line] = _lines(folder)
    assert set(line) == {"file", "label", "sha256", "received", "digit_sha256", "client", "bytes"}
    assert (line["file"], line["label"], line["sha256"]) == (f"{digest}.png", 7, digest)
    assert (line["client"], line["bytes"], len(line["digit_sha256"])) == ("10.0.0.5", len(kept), 64)
    received = datetime.fromisoformat(line["received"])
    assert received.utcoffset().total_seconds() == 0
    assert abs((datetime.now(UTC) - received).total_seconds()) < 60
    assert sorted(_contents(folder)) == [f"{digest}.png", MANIFEST_NAME]  # no temporaries left


def test_duplicates_are_stored_once(tmp_path):
    first = store_drawings([(SEVEN, 7), (FOUR, 4), (SEVEN, 7)], tmp_path, LIMITS)
    again = store_drawings([(FOUR, 4)], tmp_path, LIMITS)

    assert [item.duplicate for item in first] == [False, False, True]
    assert [item.duplicate for item in again] == [True]
    assert first[2].sha256 == first[0].sha256 and again[0].sha256 == first[1].sha256
    assert [(line["label"], line["sha256"]) for line in _lines(tmp_path)] == [
        (7, first[0].sha256),
        (4, first[1].sha256),
    ]
    assert len(list(tmp_path.glob("*.png"))) == 2


def test_the_same_drawing_with_another_label_is_refused(tmp_path):
    store_drawings([(SEVEN, 7)], tmp_path, LIMITS)
    before = _contents(tmp_path)

    with pytest.raises(
        BadInputError, match=r"item 1: this drawing was already contributed with label 7, not 1"
    ):
        store_drawings([(FOUR, 4), (SEVEN, 1)], tmp_path, LIMITS)
    with pytest.raises(
        BadInputError, match=r"item 1: this drawing is also in this request with label 4, not 9"
    ):
        store_drawings([(FOUR, 4), (FOUR, 9)], tmp_path, LIMITS)

    assert _contents(tmp_path) == before


def _reencoded(data: bytes, **options) -> bytes:
    buffer = io.BytesIO()
    with Image.open(io.BytesIO(data)) as image:
        image.save(buffer, format=image.format, **options)
    return buffer.getvalue()


def test_the_same_drawing_re_encoded_is_the_same_drawing(tmp_path):
    """Other bytes, the same pixels (another PNG compression, or another position on the canvas): the
    same digit, so the same duplicate or conflict as the original bytes."""
    store_drawings([(SEVEN, 7)], tmp_path, LIMITS)
    before = _contents(tmp_path)
    recompressed = _reencoded(SEVEN, compress_level=1)
    moved = _canvas_png(SEVEN_STROKES, offset=(30, -20))
    assert len({SEVEN, recompressed, moved}) == 3
    for other in (recompressed, moved):
        with pytest.raises(BadInputError, match=r"was already contributed with label 7, not 1"):
            store_drawings([(other, 1)], tmp_path, LIMITS)
        assert [item.duplicate for item in store_drawings([(other, 7)], tmp_path, LIMITS)] == [True]
    assert _contents(tmp_path) == before


@pytest.mark.parametrize("label", [11, 10, -1, "7", True, False, 7.0, None])
def test_a_bad_label_refuses_the_request_and_writes_nothing(tmp_path, label):
    with pytest.raises(BadInputError, match=r"^item 1: the label must be an integer 0-9, got "):
        store_drawings([(SEVEN, 7), (FOUR, label)], tmp_path / "feedback", LIMITS)
    assert not (tmp_path / "feedback").exists()


def _jpeg_bomb_header() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (1000, 1000), 255).save(buffer, format="PNG")  # 1,000,000 pixels > LIMITS.max_pixels
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the file is empty"),
        (b"this is not an image", "not an image"),
        (SEVEN[: len(SEVEN) // 2], "truncated or corrupt"),
        (SEVEN + b"\0" * LIMITS.max_bytes, "the limit is 200,000"),
        (_jpeg_bomb_header(), "1000x1000 = 1,000,000 pixels"),
        (png_bytes(np.zeros((256, 256, 4), dtype=np.uint8)), "the image is blank"),
        (png_bytes(np.full((64, 64), 255, dtype=np.uint8)), "the image is blank"),
        ("a string", "expected the image file's bytes"),
    ],
)
def test_a_bad_image_refuses_the_request_and_writes_nothing(tmp_path, data, message):
    store_drawings([(FOUR, 4)], tmp_path, LIMITS)
    before = _contents(tmp_path)
    with pytest.raises(BadInputError, match=r"^item 2: .*" + message):
        store_drawings(
            [(SEVEN, 7), (_canvas_png(SEVEN_STROKES, offset=(5, 5)), 7), (data, 3)], tmp_path, LIMITS
        )
    assert _contents(tmp_path) == before


@pytest.mark.parametrize(("count", "message"), [(0, "no drawings: send at least one"), (5, "the limit is 4")])
def test_no_items_or_too_many_are_refused(tmp_path, count, message):
    with pytest.raises(BadInputError, match=message):
        store_drawings([(SEVEN, 7)] * count, tmp_path / "feedback", LIMITS)
    assert not (tmp_path / "feedback").exists()


def test_other_formats_are_stored_as_lossless_png_with_their_alpha(tmp_path):
    canvas = canvas_rgba(draw_strokes(FOUR_STROKES), colour=(30, 60, 200))  # (256, 256, 4) uint8
    tiff = io.BytesIO()
    Image.fromarray(canvas).save(tiff, format="TIFF", compression="tiff_adobe_deflate")

    [stored] = store_drawings([(tiff.getvalue(), 4)], tmp_path, LIMITS)

    with Image.open(tmp_path / stored.file) as image:
        assert image.format == "PNG" and image.mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(image), canvas)


def test_a_failing_write_leaves_the_folder_as_it_was(tmp_path, tmp_path_factory):
    store_drawings([(FOUR, 4)], tmp_path, LIMITS)
    before = _contents(tmp_path)
    [elsewhere] = store_drawings([(SEVEN, 7)], tmp_path_factory.mktemp("elsewhere"), LIMITS)
    blocked = tmp_path / elsewhere.file  # where SEVEN would be stored
    blocked.mkdir()  # a folder in its place: storing the second drawing fails

    other = _canvas_png(jittered(SEVEN_STROKES, np.random.default_rng(0)))
    with pytest.raises(OSError):
        store_drawings([(other, 7), (SEVEN, 7)], tmp_path, LIMITS)

    blocked.rmdir()
    assert _contents(tmp_path) == before  # the first drawing's file was removed again; manifest unchanged


def test_a_file_left_without_its_manifest_line_is_recorded_by_the_next_request(tmp_path, tmp_path_factory):
    other_folder = tmp_path_factory.mktemp("elsewhere")
    [elsewhere] = store_drawings([(SEVEN, 7)], other_folder, LIMITS)
    (tmp_path / elsewhere.file).write_bytes((other_folder / elsewhere.file).read_bytes())
    # as if a worker died between writing the file and adding its manifest line
    assert read_manifest(tmp_path) == []

    [stored] = store_drawings([(SEVEN, 7)], tmp_path, LIMITS)

    assert stored.duplicate is False
    assert [record.sha256 for record in read_manifest(tmp_path)] == [stored.sha256]


def _store_many(folder: Path, drawings: list[tuple[bytes, int]], start) -> None:
    start.wait()
    for drawing in drawings:
        store_drawings([drawing], folder, LIMITS)


def test_two_processes_storing_at_once_keep_a_valid_manifest(tmp_path):
    rng = np.random.default_rng(1)
    drawings = [
        (_canvas_png(jittered(strokes, rng)), label)
        for _ in range(12)
        for strokes, label in ((SEVEN_STROKES, 7), (FOUR_STROKES, 4))
    ]  # 24 distinct drawings
    shared = drawings[:6]  # both processes send these too
    halves = [shared + drawings[6:15], shared + drawings[15:]]
    context = multiprocessing.get_context("fork")
    start = context.Event()
    workers = [context.Process(target=_store_many, args=(tmp_path, half, start)) for half in halves]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(timeout=120)
    assert [worker.exitcode for worker in workers] == [0, 0]

    lines = _lines(tmp_path)  # every line parses
    assert len(lines) == len(drawings) == len({line["sha256"] for line in lines})
    assert sorted(line["label"] for line in lines) == sorted(label for _, label in drawings)
    assert sorted(path.name for path in tmp_path.glob("*.png")) == sorted(line["file"] for line in lines)
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == [".lock"]


def test_the_folder_comes_from_the_environment_or_params_yaml(tmp_path):
    assert feedback_dir(environ={FEEDBACK_DIR_ENV: str(tmp_path)}) == tmp_path
    assert feedback_dir(environ={FEEDBACK_DIR_ENV: " "}) == DEFAULT_FEEDBACK_DIR
    assert feedback_dir(environ={}) == load_params(REPO_ROOT / "params.yaml").base.paths.feedback
    assert feedback_dir(Path("/srv/feedback"), environ={}) == Path("/srv/feedback")


@pytest.mark.parametrize("item", [SEVEN, (SEVEN,), (SEVEN, 7, "extra"), "7", None])
def test_an_item_that_is_not_a_pair_is_refused(tmp_path, item):
    with pytest.raises(BadInputError, match=r"^item 1: expected \(image bytes, label\)"):
        store_drawings([(FOUR, 4), item], tmp_path / "feedback", LIMITS)
    assert not (tmp_path / "feedback").exists()


def _distinct(count: int, seed: int = 2) -> list[tuple[bytes, int]]:
    return [(png, 7) for png in jittered_canvas_pngs(SEVEN_STROKES, count, seed)]


def test_a_client_past_its_daily_quota_is_refused_and_others_are_not(tmp_path):
    quota = FeedbackQuota(per_client_per_day=3, max_folder_bytes=10**9)
    first, second = _distinct(4), _distinct(2, seed=3)
    store_drawings(first[:2], tmp_path, LIMITS, "10.0.0.5", quota)
    before = _contents(tmp_path)
    with pytest.raises(
        QuotaExceededError, match="contributed 2 drawings in the last 24 hours; the limit is 3"
    ):
        store_drawings(first[2:], tmp_path, LIMITS, "10.0.0.5", quota)  # 2 + 2 > 3: none of them
    assert _contents(tmp_path) == before
    # A duplicate costs nothing; another client has its own quota.
    assert [item.duplicate for item in store_drawings(first[:1], tmp_path, LIMITS, "10.0.0.5", quota)] == [
        True
    ]
    store_drawings(second, tmp_path, LIMITS, "10.0.0.9", quota)
    # Contributions older than 24 hours no longer count.
    manifest = tmp_path / MANIFEST_NAME
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    for line in lines:
        line["received"] = "2000-01-01T00:00:00.000+00:00"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    store_drawings(first[2:], tmp_path, LIMITS, "10.0.0.5", quota)


def test_the_folder_stops_growing_at_its_cap(tmp_path):
    drawings = _distinct(3)
    store_drawings(drawings[:1], tmp_path, LIMITS)
    cap = 1.5 * sum(path.stat().st_size for path in tmp_path.glob("*.png"))
    quota = FeedbackQuota(per_client_per_day=100, max_folder_bytes=int(cap))
    before = _contents(tmp_path)
    with pytest.raises(StorageFullError, match="contributions are paused until they are reviewed"):
        store_drawings(drawings[1:], tmp_path, LIMITS, "10.0.0.5", quota)
    assert _contents(tmp_path) == before


def test_a_torn_last_manifest_line_is_not_read_and_is_cut_off_by_the_next_writer(tmp_path):
    store_drawings([(SEVEN, 7)], tmp_path, LIMITS)
    manifest = tmp_path / MANIFEST_NAME
    manifest.write_bytes(manifest.read_bytes() + b'{"file": "half a li')  # a writer died mid-line
    assert [record.label for record in read_manifest(tmp_path)] == [7]

    store_drawings([(FOUR, 4)], tmp_path, LIMITS)

    assert [line["label"] for line in _lines(tmp_path)] == [7, 4]  # every line parses


def test_a_drawing_the_data_contract_would_refuse_is_refused_at_upload(tmp_path):
    """A blob with a line off to one side normalises with its centre of mass off centre: ingest would
    have stored it, and the next validate stage would have stopped the whole pipeline on it."""
    from digitops.validate import digit_problems

    policy = load_params(REPO_ROOT / "params.yaml").validate_

    def contract(digit):
        return digit_problems(digit, policy)

    with pytest.raises(
        BadInputError, match=r"^item 1: the data contract refuses this drawing: .*centre of mass"
    ):
        store_drawings([(SEVEN, 7), (off_centre_blob_png(), 0)], tmp_path, LIMITS, contract=contract)
    assert _contents(tmp_path) == {}
    assert [item.duplicate for item in store_drawings([(SEVEN, 7)], tmp_path, LIMITS, contract=contract)] == [
        False
    ]
