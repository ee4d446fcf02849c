"""The apps' endpoints on a real `bentoml serve` of the smoke bento: digits read from a photo (`POST /read`)
and contributed drawings (`POST /feedback`), compared with the library called in this process."""

from __future__ import annotations

import io
import json
import shutil

import httpx
import numpy as np
import pytest
from PIL import Image

from bench.photos import blank_photo, make_photo
from digitops.infer.inputs import png_bytes
from digitops.infer.reader import READER_FILE, Reader
from digitops.infer.segment import read_digits
from tests.fakes import SEVEN_STROKES, canvas_rgba, draw_strokes, one_mark_reader_onnx
from tests.service.conftest import serve_bento

pytestmark = [pytest.mark.pipeline, pytest.mark.slow]


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def _read(url: str, data: bytes, name: str = "photo.jpg") -> httpx.Response:
    return httpx.post(f"{url}/read", files={"image": (name, data, "image/jpeg")}, timeout=60)


def test_read_finds_every_digit_and_answers_as_the_library_does(service, digits, served_model):
    rng = np.random.default_rng(7)
    picks = rng.choice(len(digits.labels), 7, replace=False)
    lines = [[digits.images[i] for i in picks[:4]], [digits.images[i] for i in picks[4:]]]
    labels = [[int(digits.labels[i]) for i in picks[:4]], [int(digits.labels[i]) for i in picks[4:]]]
    photo = make_photo(lines, labels, rng, jpeg_quality=85)
    data = _jpeg(photo.image)

    response = _read(service.url, data)

    assert response.status_code == 200, response.text
    reading = response.json()
    assert [len(line) for line in reading["text"].split("\n")] == [4, 3]  # two lines, found in order
    assert len(reading["digits"]) == 7
    for found, true_box in zip(reading["digits"], photo.boxes, strict=True):  # each box on its digit
        x, y, width, height = found["box"]
        centre = (x + width / 2, y + height / 2)
        tx, ty, tw, th = true_box
        assert tx <= centre[0] <= tx + tw and ty <= centre[1] <= ty + th
    expected = read_digits(Image.open(io.BytesIO(data)), served_model)  # the same photo, in this process
    assert reading["text"] == expected.text
    np.testing.assert_allclose(
        [d["confidence"] for d in reading["digits"]], [d.confidence for d in expected.digits], atol=1e-5
    )
    assert reading["confidence"] == pytest.approx(expected.confidence, abs=1e-5)
    assert reading["confidence"] == pytest.approx(np.prod([d["confidence"] for d in reading["digits"]]))


@pytest.fixture(scope="module")
def service_with_reader(smoke_repo, tmp_path_factory):
    """The smoke bento served with a string reader beside its model, where the package stage puts the
    champion reader (the smoke run's own reader is below the floor and never ships). This one reads every
    line as a single '-', so that its answers cannot be the crops' ones."""
    home = tmp_path_factory.mktemp("with-reader") / "bentoml"
    shutil.copytree(
        smoke_repo.env["BENTOML_HOME"],
        home,
        symlinks=True,
        ignore=shutil.ignore_patterns("prometheus_multiproc_dir"),
    )
    name, version = smoke_repo.bento_model.split(":")
    reader_file = one_mark_reader_onnx(home / "models" / name / version / READER_FILE)
    # That model by name: the service's default, `digits:latest`, may be a later import by then (the
    # pipeline tests' experiments package again into the same BentoML home).
    environment = {"BENTOML_HOME": str(home), "DIGITOPS_BENTO_MODEL": smoke_repo.bento_model}
    with serve_bento(smoke_repo.bento, smoke_repo.env, tmp_path_factory, environment) as running:
        yield running, Reader(reader_file)


def test_read_with_a_string_reader_answers_with_its_reading_as_the_library_does(
    service_with_reader, digits, served_model
):
    service, reader = service_with_reader
    rng = np.random.default_rng(8)
    picks = rng.choice(len(digits.labels), 4, replace=False)
    photo = make_photo(
        [[digits.images[i] for i in picks]], [[int(digits.labels[i]) for i in picks]], rng, jpeg_quality=85
    )
    data = _jpeg(photo.image)
    image = Image.open(io.BytesIO(data))
    assert len(read_digits(image, served_model).digits) == 4  # crop by crop: the four digits

    response = _read(service.url, data)

    assert response.status_code == 200, response.text
    reading = response.json()
    expected = read_digits(image, served_model, reader)  # the same photo and models, in this process
    assert reading["text"] == expected.text == "" and reading["digits"] == []  # the reader's reading
    assert [(s["mark"], s["box"]) for s in reading["separators"]] == [
        (s.mark, list(s.box)) for s in expected.separators
    ]
    assert [s["mark"] for s in reading["separators"]] == ["-"]


def test_read_a_photo_without_digits_is_an_empty_answer(service):
    photo = blank_photo(300, 400, np.random.default_rng(1))
    response = _read(service.url, _jpeg(photo))
    assert response.status_code == 200
    assert response.json()["text"] == "" and response.json()["digits"] == []
    assert response.json()["confidence"] == 0.0


def test_read_refuses_what_is_not_a_photo(service):
    response = _read(service.url, b"%PDF-1.4 not a photo", name="notes.pdf")
    assert response.status_code == 400
    assert "not an image" in response.text


def _feedback(url: str, images: list[bytes], labels) -> httpx.Response:
    files = [("images", (f"drawing{i}.png", data, "image/png")) for i, data in enumerate(images)]
    return httpx.post(f"{url}/feedback", files=files, data={"labels": json.dumps(labels)}, timeout=30)


def test_feedback_stores_a_drawing_once_with_its_label(service):
    drawing = png_bytes(
        Image.fromarray(canvas_rgba(draw_strokes(SEVEN_STROKES), colour=(30, 30, 160)), "RGBA")
    )
    first = _feedback(service.url, [drawing], [7])
    again = _feedback(service.url, [drawing], [7])

    assert first.status_code == 200, first.text
    stored = first.json()["stored"]
    assert [(item["label"], item["duplicate"]) for item in stored] == [(7, False)]
    assert again.json()["stored"][0]["duplicate"] is True
    kept = service.quarantine / f"{stored[0]['sha256']}.png"  # re-encoded: the pixels, nothing else
    with Image.open(kept) as image, Image.open(io.BytesIO(drawing)) as sent:
        np.testing.assert_array_equal(np.asarray(image), np.asarray(sent))
    manifest = (service.quarantine / "manifest.jsonl").read_text().splitlines()
    assert sum(json.loads(line)["sha256"] == stored[0]["sha256"] for line in manifest) == 1


@pytest.mark.parametrize(
    ("labels", "phrase"),
    [([11], "0-9"), ([-1], "0-9"), (["7"], "valid integer"), ([1, 2], "1 images but 2 labels")],
)
def test_feedback_refuses_bad_labels_and_writes_nothing(service, labels, phrase):
    drawing = png_bytes(Image.fromarray(canvas_rgba(draw_strokes([[(40, 40), (200, 200)]])), "RGBA"))
    before = (
        sorted(path.name for path in service.feedback_dir.glob("*")) if service.feedback_dir.exists() else []
    )
    response = _feedback(service.url, [drawing], labels)
    assert response.status_code == 400
    assert phrase in response.text
    after = (
        sorted(path.name for path in service.feedback_dir.glob("*")) if service.feedback_dir.exists() else []
    )
    assert after == before


def test_feedback_refuses_a_file_that_is_not_an_image(service):
    response = _feedback(service.url, [b"garbage"], [3])
    assert response.status_code == 400
    assert "not an image" in response.text
