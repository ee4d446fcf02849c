"""The page at GET / in a real browser (Debian's Chromium driven by Playwright), against a real
`bentoml serve` of the smoke bento: drawing with the mouse, the prediction and its bars, Clear, a
contributed label, a photo read with its boxes, and screenshots on a desktop and a phone viewport.

Needs `/usr/bin/chromium` (apt-get install chromium) and the `playwright` package (no browser download:
never `playwright install`)."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import io
import itertools
import os
import re
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.fakes import FOUR_STROKES, SEVEN_STROKES, draw_strokes

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
ONE_STROKES = [[(128, 40), (128, 216)]]  # a vertical bar, on the 256-unit square of tests/fakes' strokes

pytestmark = [
    pytest.mark.pipeline,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium: apt-get install -y chromium"),
    pytest.mark.skipif(
        importlib.util.find_spec("playwright") is None,
        reason="the playwright package is not installed (pip install playwright; never `playwright install`)",
    ),
]


class PageLog:
    """What a page asked for and complained about."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.errors: list[str] = []

    def assert_clean(self, origin: str, refused: int = 0) -> None:
        """Every request went to the service (nothing from a CDN: the page works offline); no JS errors but
        the browser's note of each of the `refused` requests the test expected a 400 for."""
        assert self.requests, "the page made no requests"
        local = (f"{origin}/", f"blob:{origin}/", "data:")  # the photo is shown from a blob: URL
        strangers = [url for url in self.requests if not url.startswith(local)]
        assert not strangers, f"requests outside the service: {strangers}"
        note = "Failed to load resource: the server responded with a status of 400"
        assert [error for error in self.errors if not error.startswith(note)] == [], self.errors
        assert len(self.errors) == refused, self.errors


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _open(browser, service, viewport: dict, **options):
    context = browser.new_context(viewport=viewport, **options)
    page = context.new_page()
    log = PageLog()
    page.on("request", lambda request: log.requests.append(request.url))
    page.on("pageerror", lambda error: log.errors.append(f"uncaught: {error}"))
    page.on("console", lambda message: log.errors.append(message.text) if message.type == "error" else None)
    page.set_default_timeout(30_000)
    page.goto(f"{service.url}/")
    page.wait_for_selector("#bars li")  # app.js has run
    return context, page, log


@pytest.fixture
def desktop(browser, service):
    context, page, log = _open(browser, service, DESKTOP)
    yield page, log
    context.close()


def _draw(page, strokes: list[list[tuple[int, int]]], units: int = 256, touch: bool = False) -> None:
    """Draw `strokes` (in a square of `units`) on the canvas as a person would: with the mouse, or with a
    finger (touch events through the DevTools protocol, as a phone's touchscreen sends them)."""
    left, top, side = page.evaluate(
        """() => {
            const canvas = document.getElementById("pad");
            const box = canvas.getBoundingClientRect();
            return [box.left + canvas.clientLeft, box.top + canvas.clientTop, canvas.clientWidth];
        }"""
    )
    scale = side / units
    cdp = page.context.new_cdp_session(page) if touch else None

    def press(kind: str, x: float | None = None, y: float | None = None) -> None:
        if cdp is not None:
            points = [] if x is None else [{"x": x, "y": y}]
            cdp.send("Input.dispatchTouchEvent", {"type": f"touch{kind}", "touchPoints": points})
        elif kind == "Start":
            page.mouse.move(x, y)
            page.mouse.down()
        elif kind == "Move":
            page.mouse.move(x, y)
        else:
            page.mouse.up()

    for stroke in strokes:
        points = [(left + x * scale, top + y * scale) for x, y in stroke]
        press("Start", *points[0])
        for (x0, y0), (x1, y1) in itertools.pairwise(points):
            steps = max(2, int(np.hypot(x1 - x0, y1 - y0) / 8))
            for step in range(1, steps + 1):
                press("Move", x0 + (x1 - x0) * step / steps, y0 + (y1 - y0) * step / steps)
        press("End")
    if cdp is not None:
        cdp.detach()


def _settled_prediction(page) -> dict:
    """The prediction on screen once the page has an answer for the drawing as it is now."""
    page.wait_for_selector("#prediction[aria-busy='false']")
    page.wait_for_function(
        "document.getElementById('digit').textContent !== ''"
        " || !document.getElementById('prediction-error').hidden"
    )
    return page.evaluate(
        """() => ({
            digit: document.getElementById("digit").textContent,
            confidence: document.getElementById("confidence").textContent,
            error: document.getElementById("prediction-error").hidden
                ? null : document.getElementById("prediction-error").textContent,
            bars: [...document.querySelectorAll("#bars li")].map((bar) => ({
                probability: bar.dataset.probability,
                text: bar.textContent,
                width: bar.querySelector(".bar-fill").getBoundingClientRect().width,
                top: bar.classList.contains("is-top"),
            })),
            version: document.getElementById("model-version").textContent,
        })"""
    )


def _canvas_png(page) -> bytes:
    url = page.evaluate("document.getElementById('pad').toDataURL('image/png')")
    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    return base64.b64decode(url[len(prefix) :])


def _served_answer(service, png: bytes) -> dict:
    """What the service answers for that PNG, asked directly."""
    response = httpx.post(
        f"{service.url}/digit", content=png, headers={"Content-Type": "image/png"}, timeout=30
    )
    assert response.status_code == 200, response.text
    return response.json()


def _percent(text: str) -> float:
    """The first percentage in `text`: "Confidence 97.3%" -> 97.3."""
    match = re.search(r"(\d+(?:\.\d+)?)%", text)
    assert match, f"no percentage in {text!r}"
    return float(match.group(1))


def _assert_page_shows(shown: dict, answer: dict) -> None:
    assert shown["error"] is None
    assert shown["digit"] == str(answer["digit"])
    assert _percent(shown["confidence"]) == pytest.approx(100 * answer["confidence"], abs=0.051)
    assert shown["version"] == answer["model_version"]
    assert len(shown["bars"]) == 10
    np.testing.assert_allclose(
        [float(bar["probability"]) for bar in shown["bars"]], answer["probabilities"], atol=1e-6
    )
    assert [bar["top"] for bar in shown["bars"]] == [digit == answer["digit"] for digit in range(10)]
    for digit, bar in enumerate(shown["bars"]):  # accessible text: "Digit 3: 0.1%"
        assert f"Digit {digit}: " in bar["text"]
        assert _percent(bar["text"]) == pytest.approx(100 * answer["probabilities"][digit], abs=0.051)
    widths = [bar["width"] for bar in shown["bars"]]
    assert max(widths) == widths[answer["digit"]] > 0  # the longest bar is the predicted digit's


def test_a_drawn_one_is_read_as_one_and_the_page_shows_what_the_service_answers(desktop, service):
    page, log = desktop
    assert page.title().startswith("digitops")
    _draw(page, ONE_STROKES)
    shown = _settled_prediction(page)
    answer = _served_answer(service, _canvas_png(page))
    _assert_page_shows(shown, answer)
    assert answer["digit"] == 1, f"a vertical bar was read as {answer['digit']}: {answer['probabilities']}"
    log.assert_clean(service.url)


def test_a_drawn_seven_gets_the_services_answer_and_clear_empties_canvas_and_prediction(desktop, service):
    page, log = desktop
    _draw(page, SEVEN_STROKES)
    shown = _settled_prediction(page)
    png = _canvas_png(page)
    rgba = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))
    assert rgba[..., 3].max() == 255 and rgba[0, 0, 3] == 0  # dark ink on a transparent canvas
    _assert_page_shows(shown, _served_answer(service, png))
    assert not page.get_by_role("button", name="Save this drawing as a 7").is_disabled()

    page.get_by_role("button", name="Clear").click()
    assert page.evaluate(
        """() => {
            const canvas = document.getElementById("pad");
            const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
            return pixels.every((value) => value === 0);
        }"""
    ), "the canvas still has ink after Clear"
    assert page.text_content("#digit") == ""
    assert "Draw a digit" in page.text_content("#confidence")
    assert [bar.get_attribute("data-probability") for bar in page.query_selector_all("#bars li")] == [""] * 10
    assert page.get_by_role("button", name="Save this drawing as a 7").is_disabled()
    page.wait_for_timeout(500)  # a late answer must not bring the old prediction back
    assert page.text_content("#digit") == ""
    log.assert_clean(service.url)


def test_picking_the_right_digit_stores_the_drawing(desktop, service):
    page, log = desktop
    before = set(service.quarantine.glob("*.png")) if service.quarantine.exists() else set()
    _draw(page, FOUR_STROKES)
    _settled_prediction(page)
    page.get_by_role("button", name="Save this drawing as a 4").click()
    status = page.locator("#feedback-status")
    status.filter(has_text="Thanks").wait_for()
    assert status.text_content() == "Thanks: saved as a 4."
    new = set(service.quarantine.glob("*.png")) - before
    assert len(new) == 1, f"expected one new drawing in {service.quarantine}, found {sorted(new)}"
    (stored,) = new
    assert stored.name == f"{hashlib.sha256(stored.read_bytes()).hexdigest()}.png"
    stored_alpha = np.asarray(Image.open(stored).convert("RGBA"))[..., 3]
    canvas_alpha = np.asarray(Image.open(io.BytesIO(_canvas_png(page))).convert("RGBA"))[..., 3]
    np.testing.assert_array_equal(stored_alpha, canvas_alpha)  # the drawing itself, as drawn

    page.get_by_role("button", name="Save this drawing as a 4").click()  # the same drawing again
    status.filter(has_text="already").wait_for()
    assert status.text_content() == "Thanks: already saved as a 4."
    assert set(service.quarantine.glob("*.png")) - before == new

    page.get_by_role("button", name="Save this drawing as a 7").click()  # the same drawing, another label
    status.filter(has_text="Not saved").wait_for()
    message = status.text_content()
    assert "4" in message and "7" in message, message  # the service's own words, not a bare status code
    assert "answered 400" not in message, message
    assert set(service.quarantine.glob("*.png")) - before == new
    log.assert_clean(service.url, refused=1)


def _photo(path: Path) -> Path:
    """Three MNIST-looking digits (7, 4, 1), bold dark ink on light paper, side by side, as a PNG."""
    ink = np.zeros((300, 3 * 256 + 120), dtype=np.uint8)
    for index, strokes in enumerate([SEVEN_STROKES, FOUR_STROKES, ONE_STROKES]):
        x = 60 + index * 256
        ink[22:278, x : x + 256] = np.maximum(ink[22:278, x : x + 256], draw_strokes(strokes, width=20))
    paper = np.array([236, 232, 222], dtype=np.float32)
    pen = np.array([28, 30, 48], dtype=np.float32)
    alpha = (ink.astype(np.float32) / 255)[..., None]
    Image.fromarray((paper * (1 - alpha) + pen * alpha).astype(np.uint8), mode="RGB").save(path)
    return path


def _read_photo(page, photo: Path) -> dict:
    page.set_input_files("#photo", str(photo))
    page.wait_for_selector("#photo-result[aria-busy='false']")
    page.wait_for_function(
        "document.getElementById('photo-text').textContent.startsWith('Read')"
        " || document.getElementById('photo-text').textContent.startsWith('No digits')"
        " || !document.getElementById('photo-error').hidden"
    )
    return page.evaluate(
        """() => {
            const image = document.getElementById("photo-image").getBoundingClientRect();
            return {
                text: document.getElementById("photo-text").textContent,
                read: document.querySelector("#photo-text .read")?.textContent ?? null,
                error: document.getElementById("photo-error").hidden
                    ? null : document.getElementById("photo-error").textContent,
                image: [image.left, image.top, image.width, image.height],
                boxes: [...document.querySelectorAll("#photo-frame .box")].map((box) => {
                    const r = box.getBoundingClientRect();
                    return {
                        digit: box.textContent,
                        rect: [r.left, r.top, r.width, r.height],
                        low: box.classList.contains("low"),
                    };
                }),
                low_text: [...document.querySelectorAll("#photo-text .read span")].map(
                    (span) => span.classList.contains("low")
                ),
            };
        }"""
    )


def test_a_photo_of_three_digits_gets_three_boxes_and_a_three_digit_text(desktop, service, tmp_path):
    page, log = desktop
    photo = _photo(tmp_path / "three-digits.png")
    shown = _read_photo(page, photo)
    with photo.open("rb") as handle:
        response = httpx.post(
            f"{service.url}/read", files={"image": ("three-digits.png", handle, "image/png")}, timeout=60
        )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert shown["error"] is None
    assert len(answer["digits"]) == 3, answer
    assert len(answer["text"].replace("\n", "")) == 3
    assert shown["read"] == answer["text"]
    assert [box["digit"] for box in shown["boxes"]] == [str(item["digit"]) for item in answer["digits"]]
    # Each box is where the service found its digit, scaled to the photo as displayed.
    left, top, width, height = shown["image"]
    photo_width, photo_height = Image.open(photo).size
    for box, item in zip(shown["boxes"], answer["digits"], strict=True):
        x, y, w, h = item["box"]
        expected = [left + x * width / photo_width, top + y * height / photo_height]
        expected += [w * width / photo_width, h * height / photo_height]
        np.testing.assert_allclose(box["rect"], expected, atol=1.5)
    lefts = [box["rect"][0] for box in shown["boxes"]]
    assert lefts == sorted(lefts)  # reading order, left to right
    # A digit read with low confidence (app.js's LOW_CONFIDENCE) is amber on the photo and in the text.
    low = [item["confidence"] < 0.8 for item in answer["digits"]]
    assert [box["low"] for box in shown["boxes"]] == low
    assert shown["low_text"] == low
    assert f"confidence {round(100 * answer['confidence'])}%" in shown["text"]
    log.assert_clean(service.url)


def _layout(page) -> dict:
    return page.evaluate(
        """() => {
            const rect = (selector) => document.querySelector(selector).getBoundingClientRect();
            const [draw, prediction] = document.querySelectorAll(".panel");
            const a = draw.getBoundingClientRect(), b = prediction.getBoundingClientRect();
            return {
                draw: [a.left, a.top, a.right, a.bottom],
                prediction: [b.left, b.top, b.right, b.bottom],
                scroll_width: document.documentElement.scrollWidth,
                canvas: [rect("#pad").width, rect("#pad").height],
            };
        }"""
    )


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
def test_screenshots_on_a_desktop_and_a_phone(browser, service, tmp_path, viewport):
    """The page in use, one column on a phone and two on a desktop; a screenshot of each in the test's tmp
    folder and, when DIGITOPS_SCREENSHOTS names a folder, there too (docs/)."""
    if viewport == "phone":
        options = {"device_scale_factor": 2, "is_mobile": True, "has_touch": True}
        context, page, log = _open(browser, service, PHONE, **options)
    else:
        context, page, log = _open(browser, service, DESKTOP)
    try:
        if viewport == "phone":  # a finger draws on the canvas, and the page does not scroll under it
            page.evaluate("window.scrollTo(0, 40)")
            _draw(page, SEVEN_STROKES, touch=True)
            assert page.evaluate("window.scrollY") == 40
        else:
            _draw(page, SEVEN_STROKES)
        shown = _settled_prediction(page)
        _assert_page_shows(shown, _served_answer(service, _canvas_png(page)))
        _read_photo(page, _photo(tmp_path / "three-digits.png"))
        layout = _layout(page)
        width = PHONE["width"] if viewport == "phone" else DESKTOP["width"]
        assert layout["scroll_width"] <= width, "the page scrolls sideways"
        assert layout["canvas"][0] == pytest.approx(layout["canvas"][1])  # a square
        if viewport == "phone":
            assert layout["prediction"][1] >= layout["draw"][3], "a phone should show one column"
        else:
            assert layout["prediction"][1] == pytest.approx(layout["draw"][1]), "a desktop shows two columns"
            assert layout["prediction"][0] >= layout["draw"][2]
        shot = tmp_path / f"page-{viewport}.png"
        page.screenshot(path=str(shot), full_page=True)
        assert Image.open(shot).size[0] == width * (2 if viewport == "phone" else 1)
        if folder := os.environ.get("DIGITOPS_SCREENSHOTS"):
            Path(folder).mkdir(parents=True, exist_ok=True)
            shutil.copy2(shot, Path(folder) / shot.name)
        log.assert_clean(service.url)
    finally:
        context.close()
