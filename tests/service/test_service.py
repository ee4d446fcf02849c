"""The service as users meet it: a real `bentoml serve` of the bento that the smoke pipeline built, answering
HTTP on loopback, compared against the same model called in this process."""

from __future__ import annotations

import csv
import io
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bentoml
import httpx
import numpy as np
import pytest
from PIL import Image

from digitops.cli import main as digitops_cli
from digitops.infer.inputs import digit_from_image, png_bytes
from digitops.preprocess import normalize_digits
from tests.cards import share, tables
from tests.fakes import (
    SEVEN_STROKES,
    canvas_rgba,
    draw_strokes,
    image_files,
    locked_packages,
    png_claiming_size,
    write_kaggle_csv,
)
from tests.service.conftest import SmokeDigits

pytestmark = [pytest.mark.pipeline, pytest.mark.slow]


def _classify(url: str, pngs: list[bytes], timeout: float = 30) -> httpx.Response:
    files = [("images", (f"digit{index}.png", data, "image/png")) for index, data in enumerate(pngs)]
    return httpx.post(f"{url}/classify", files=files, timeout=timeout)


def _assert_alive(url: str, digits: SmokeDigits) -> None:
    assert httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    response = _classify(url, digits.pngs[:1])
    assert response.status_code == 200
    assert response.json()[0]["digit"] == int(digits.expected[0].argmax())


def test_python_client_gets_the_models_answers(service, digits):
    with bentoml.SyncHTTPClient(service.url) as client:
        results = client.classify(images=[Image.open(io.BytesIO(data)) for data in digits.pngs[:20]])
    assert [result["digit"] for result in results] == digits.expected[:20].argmax(axis=1).tolist()
    for result, expected in zip(results, digits.expected[:20], strict=True):
        assert len(result["probabilities"]) == 10
        np.testing.assert_allclose(result["probabilities"], expected, atol=1e-5)
        assert result["confidence"] == pytest.approx(max(result["probabilities"]))
        assert re.fullmatch(r"digits/\d+", result["model_version"])


def test_get_model_answers_the_served_versions_card(service, digits, smoke_repo):
    """GET /model: the card that promote wrote for the served version, as Markdown, with its figures."""
    response = httpx.get(f"{service.url}/model", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/markdown; charset=utf-8"
    card = response.text
    assert "## Known limitations" in card
    # The served version's card: its title names the version that the answers name (digits/<version>).
    answer = _classify(service.url, digits.pngs[:1]).json()[0]
    assert card.startswith(f"# Model card: {answer['model_version'].replace('/', ' version ')}\n")
    overall = tables(card)["Evaluation on the test split"][-1]
    assert overall["source"] == "overall"
    assert share(overall["accuracy"], smoke_repo.evaluation["overall"]["accuracy"])
    page = httpx.get(f"{service.url}/", timeout=10).text
    assert 'href="/model"' in page


def test_plain_multipart_http_gets_the_models_answers(service, digits):
    response = _classify(service.url, digits.pngs[20:40])
    assert response.status_code == 200
    assert [result["digit"] for result in response.json()] == digits.expected[20:40].argmax(axis=1).tolist()


def test_a_canvas_drawing_is_normalised_exactly_as_ingest_normalises_it(service, served_model):
    """One normaliser: a browser-canvas RGBA drawing through HTTP gets the probabilities that the model
    gives the array ingest's normaliser makes of the same drawing."""
    canvas = canvas_rgba(draw_strokes(SEVEN_STROKES), colour=(20, 40, 200))
    expected = served_model(normalize_digits([canvas]))[0]
    response = _classify(service.url, [png_bytes(Image.fromarray(canvas, mode="RGBA"))])
    assert response.status_code == 200
    np.testing.assert_allclose(response.json()[0]["probabilities"], expected, atol=1e-5)


def test_every_served_answer_is_the_keras_models_digit_on_the_whole_test_split(service, digits, smoke_repo):
    """The service runs the ONNX export; the Keras model as trained must read every test digit the same,
    and the accuracy over HTTP is the evaluate stage's."""
    import keras

    predicted = []
    for start in range(0, len(digits.pngs), 64):
        response = _classify(service.url, digits.pngs[start : start + 64])
        assert response.status_code == 200
        predicted += [result["digit"] for result in response.json()]
    trained = keras.saving.load_model(smoke_repo.keras_model, compile=False)
    keras_digits = keras.ops.convert_to_numpy(trained(normalize_digits(digits.images))).argmax(axis=1)
    assert np.array_equal(np.array(predicted), keras_digits)
    accuracy = float(np.mean(np.array(predicted) == digits.labels))
    assert accuracy == pytest.approx(smoke_repo.evaluation["overall"]["accuracy"], abs=0.002)


def test_the_workers_run_onnx_runtime_without_tensorflow(service, digits, smoke_repo):
    """No TensorFlow, Keras or h5py in a serving worker (this virtualenv has them: nothing may import
    them), and none in the bento's requirements, which the container installs."""
    import psutil

    _assert_alive(service.url, digits)
    workers = psutil.Process(service.pid).children(recursive=True)
    libraries = [Path(f"/proc/{worker.pid}/maps").read_text() for worker in workers]
    serving = [maps for maps in libraries if "onnxruntime" in maps]
    assert serving, "no process of the service has ONNX Runtime loaded"
    for maps in serving:
        assert "tensorflow" not in maps and "h5py" not in maps
    name, version = smoke_repo.bento.split(":")
    bento = Path(smoke_repo.env["BENTOML_HOME"]) / "bentos" / name / version
    packages = locked_packages((bento / "env/python/requirements.txt").read_text())
    assert "onnxruntime" in packages
    assert not packages.keys() & {"tensorflow", "tensorflow-cpu", "keras", "h5py", "tf2onnx", "onnx"}
    assert not any((bento / "models").rglob("*.keras"))  # the bento carries the ONNX file only


def test_digitops_predict_url_gets_the_served_models_answers(service, digits, served_model, tmp_path):
    """`digitops predict --url`: a Kaggle CSV (100 rows: two requests of at most 64 images) and a scanned
    JPEG, sent as the file's own bytes, get the answers of the model in the bento."""
    count = 100
    table = write_kaggle_csv(tmp_path / "train.csv", digits.images[:count], digits.labels[:count])
    submission = tmp_path / "submission.csv"
    assert digitops_cli(["predict", str(table), "--url", service.url, "--out", str(submission)]) == 0
    with submission.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["ImageId", "Label"]
    expected = digits.expected[:count].argmax(axis=1)
    assert rows[1:] == [[str(index + 1), str(digit)] for index, digit in enumerate(expected)]

    scan = tmp_path / "scan.jpg"  # dark ink on light paper, larger, RGB
    Image.fromarray(255 - digits.images[count]).resize((84, 84)).convert("RGB").save(scan, quality=95)
    scan_expected = served_model(digit_from_image(Image.open(scan))[None])[0]
    predictions = tmp_path / "predictions.csv"
    command = ["predict", str(table), str(scan), "--url", service.url, "--out", str(predictions)]
    assert digitops_cli(command) == 0
    with predictions.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["path", "digit", "confidence", "label"]
    assert [row[1] for row in rows[1 : count + 1]] == [str(digit) for digit in expected]
    assert [row[3] for row in rows[1 : count + 1]] == [str(label) for label in digits.labels[:count]]
    assert rows[-1][:2] == [str(scan), str(int(scan_expected.argmax()))]
    assert float(rows[-1][2]) == pytest.approx(float(scan_expected.max()), abs=1e-5)


def _batch_sizes(url: str) -> tuple[float, float]:
    """(sum, count) of the model calls' batch-size histogram in /metrics (all workers)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    sums = re.findall(r"^digitops_batch_size_sum ([0-9.e+]+)$", text, re.MULTILINE)
    counts = re.findall(r"^digitops_batch_size_count ([0-9.e+]+)$", text, re.MULTILINE)
    return sum(map(float, sums)), sum(map(float, counts))


def test_64_concurrent_single_image_requests_are_answered_and_batched(service, digits):
    sum_before, count_before = _batch_sizes(service.url)
    indices = list(range(64, 64 + 64 * 4))  # 256 requests, 64 in flight at a time

    def one(index: int) -> tuple[int, int]:
        response = _classify(service.url, [digits.pngs[index]], timeout=60)
        return response.status_code, response.json()[0]["digit"] if response.status_code == 200 else -1

    with ThreadPoolExecutor(max_workers=64) as pool:
        answers = list(pool.map(one, indices))
    assert [status for status, _ in answers] == [200] * len(indices)
    assert [digit for _, digit in answers] == digits.expected[indices].argmax(axis=1).tolist()
    sum_after, count_after = _batch_sizes(service.url)
    mean_batch = (sum_after - sum_before) / (count_after - count_before)
    assert mean_batch > 1, f"requests were not coalesced: mean batch {mean_batch}"


def test_health_and_metrics_endpoints(service, digits):
    assert httpx.get(f"{service.url}/livez", timeout=5).status_code == 200
    _classify(service.url, digits.pngs[:3])
    metrics = httpx.get(f"{service.url}/metrics", timeout=5).text
    assert re.search(r'^digitops_predicted_digit_total\{digit="\d"\} \d', metrics, re.MULTILINE)
    assert re.search(r"^digitops_prediction_confidence_count \d", metrics, re.MULTILINE)
    assert "bentoml_service_request_total" in metrics


def test_no_tracing_spans_are_built_without_an_exporter(service, digits):
    """BentoML names each request by its span (X-BentoML-Request-ID); with no trace exporter configured the
    service asks it to build none (digitops.serve.tracing), so no answer carries one."""
    answers = [
        _classify(service.url, digits.pngs[:1]),
        httpx.post(f"{service.url}/digit", content=digits.pngs[0]),
    ]
    for response in answers:
        assert response.status_code == 200
        assert "x-bentoml-request-id" not in response.headers


def _float_tiff_with_inf() -> bytes:
    """A float TIFF (mode F) of a drawn 7 with one inf pixel: Pillow decodes it, the normaliser cannot."""
    pixels = np.asarray(Image.fromarray(draw_strokes(SEVEN_STROKES)).resize((56, 56)), np.float32) / 255
    pixels[28, 28] = np.inf
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="F").save(buffer, format="TIFF")
    return buffer.getvalue()


# case: (the request's httpx.post arguments, given a good PNG; a phrase its error message must contain)
BAD_REQUESTS = {
    "not an image": (lambda good: image_files(b"%PDF-1.4 this is not a picture"), "not an image"),
    "empty file": (lambda good: image_files(b""), "the file is empty"),
    "truncated png": (lambda good: image_files(good[: len(good) // 2]), "truncated or corrupt"),
    "blank image": (lambda good: image_files(png_bytes(Image.new("L", (28, 28), 255))), "blank"),
    "over the pixel limit": (
        lambda good: image_files(png_bytes(Image.new("L", (6000, 6000)))),
        "the limit is 1,048,576 for a digit image",
    ),
    "decompression bomb header": (lambda good: image_files(png_claiming_size(100_000, 100_000)), "pixels"),
    "too many images": (
        lambda good: image_files(*[good] * 257),
        "257 images in one request; the limit is 256",
    ),
    "empty list": (lambda good: {"json": {"images": []}}, "no images"),
    "no images field": (lambda good: {"json": {"pictures": []}}, "Field required"),
    "one bad image among good ones": (lambda good: image_files(good, b"garbage", good), "not an image"),
    "float tiff with an inf pixel": (lambda good: image_files(_float_tiff_with_inf()), "not finite numbers"),
    "a format users do not send (ICO)": (
        lambda good: image_files(_encoded(Image.open(io.BytesIO(good)), "ICO")),
        "not an image in a format the service reads",
    ),
    "a text part {} where files go": (
        lambda good: {"files": {"images": (None, b"{}")}},
        "is text, not a file",
    ),
    # BentoML parses a part outside the API's file fields as JSON text: a PNG there was a 500
    "a file in a field the API does not have": (
        lambda good: {"files": {"pictures": ("a.png", good, "image/png")}},
        "'pictures' is not a field of this API",
    ),
    # Starlette's form parser fails on a multipart type without a boundary: a 500 before the body was read
    "multipart without a boundary": (
        lambda good: {"content": b"", "headers": {"Content-Type": "multipart/form-data"}},
        "no boundary",
    ),
}


def _encoded(image: Image.Image, format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_input_gets_a_4xx_that_says_why_and_the_server_stays_up(service, digits, case):
    build, message = BAD_REQUESTS[case]
    response = httpx.post(f"{service.url}/classify", timeout=30, **build(digits.pngs[0]))
    assert 400 <= response.status_code < 500, response.text
    assert message in response.text
    _assert_alive(service.url, digits)


def test_a_float_tiff_with_an_inf_pixel_gets_a_400_on_the_lean_route_and_feedback(service, digits):
    data = _float_tiff_with_inf()
    stored_before = sorted(service.feedback_dir.rglob("*")) if service.feedback_dir.exists() else []
    answers = [
        httpx.post(f"{service.url}/digit", content=data, headers={"Content-Type": "image/tiff"}, timeout=30),
        httpx.post(
            f"{service.url}/feedback",
            files=[("images", ("seven.tiff", data, "image/tiff"))],
            data={"labels": "[7]"},
            timeout=30,
        ),
    ]
    for response in answers:
        assert response.status_code == 400, response.text
        assert "not finite numbers (inf or NaN)" in response.text
    assert (sorted(service.feedback_dir.rglob("*")) if service.feedback_dir.exists() else []) == stored_before
    _assert_alive(service.url, digits)


def _url_requests(url: str) -> dict[str, tuple[str, dict]]:
    """Requests that put `url` where a file goes: route and httpx.post arguments, by case."""
    return {
        "text part in images (/classify)": ("/classify", {"files": {"images": (None, url.encode())}}),
        "text part in image (/read)": ("/read", {"files": {"image": (None, url.encode())}}),
        "text part in images (/feedback)": (
            "/feedback",
            {"files": {"images": (None, url.encode())}, "data": {"labels": "[7]"}},
        ),
        "text part among files": (
            "/classify",
            {
                "files": [
                    ("images", ("a.png", png_bytes(draw_strokes(SEVEN_STROKES)), "image/png")),
                    ("images", (None, url.encode())),
                ]
            },
        ),
        "urlencoded form": ("/classify", {"data": {"images": url}}),
        "the whole body": ("/classify", {"content": url.encode(), "headers": {"Content-Type": "text/plain"}}),
        "the whole body as JSON": ("/read", {"content": url.encode()}),
    }


def test_a_url_where_a_file_goes_gets_a_400_and_is_never_fetched(service, digits, http_server):
    """BentoML fetches a URL sent where a file goes (a text part of a file field, a urlencoded field, a
    whole body that is a URL) before any of our checks. Its own guard blocks loopback addresses but not
    proxied requests: the service's proxy (`service.egress`) would receive each fetch, to any host, and the
    server on 127.0.0.1 each direct one that got through."""
    (http_server.root / "x.png").write_bytes(digits.pngs[0])
    urls = [f"{http_server.url}/x.png", "http://internal.invalid/x.png"]
    egress_before = len(service.egress.requests)
    for url in urls:
        for case, (route, arguments) in _url_requests(url).items():
            response = httpx.post(f"{service.url}{route}", timeout=30, **arguments)
            assert response.status_code == 400, f"{case}: {response.status_code} {response.text}"
            assert "fetches no URLs" in response.text or "cannot carry files" in response.text, case
    assert http_server.requests == []
    assert service.egress.requests[egress_before:] == []
    _assert_alive(service.url, digits)
