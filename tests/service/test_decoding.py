"""No upload takes a worker down: large images are decoded off the event loop, a few at a time, within the
pixel limit of their route, against a real `bentoml serve`."""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import psutil
import pytest
from PIL import Image

from digitops.infer.inputs import png_bytes
from tests.fakes import SEVEN_STROKES, draw_strokes, image_files

pytestmark = pytest.mark.slow

DIGIT_PIXEL_LIMIT = "the limit is 1,048,576 for a digit image"  # params.yaml serve.max_image_pixels
MAX_GROWTH = 200_000_000  # bytes of resident memory a worker may gain during a burst of large uploads
GOOD_ANSWER_S = 2.0  # a small request's latency while large ones are in flight


def _seven(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """A black 7, half the image's height, on white: a photo or a scan of one digit."""
    ink = Image.fromarray(draw_strokes(SEVEN_STROKES)).resize((size[1] // 2, size[1] // 2))
    image = Image.new(mode, size, "white")
    image.paste("black", ((size[0] - ink.width) // 2, size[1] // 4), mask=ink)
    return image


def _encoded(image: Image.Image, format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


class _WorkerMemory:
    """The resident memory of the service's processes, sampled in a thread: the most each one gained."""

    def __init__(self, pid: int) -> None:
        self.processes = psutil.Process(pid).children(recursive=True)
        self.baseline = {process.pid: process.memory_info().rss for process in self.processes}
        self.peak = dict(self.baseline)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            for process in self.processes:
                try:
                    rss = process.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
                self.peak[process.pid] = max(self.peak[process.pid], rss)
            time.sleep(0.01)

    def __enter__(self) -> _WorkerMemory:
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def most_gained(self) -> int:
        return max(self.peak[pid] - self.baseline[pid] for pid in self.baseline)


def _burst_while_timing_a_good_request(service, route: str, bodies: list[dict], good_png: bytes):
    """Sends `bodies` to `route` all at once; while they are in flight, times good /classify requests.

    Returns:
        The burst's responses, the good requests' latencies (s) and their responses, the most a service
        process's memory grew.
    """
    with httpx.Client(timeout=120) as client:
        client.post(f"{service.url}/classify", **image_files(good_png)).raise_for_status()  # warm
        with _WorkerMemory(service.pid) as memory, ThreadPoolExecutor(len(bodies)) as pool:
            burst = [pool.submit(client.post, f"{service.url}{route}", **body) for body in bodies]
            time.sleep(0.5)  # the large uploads are sent and being decoded
            latencies, good = [], []
            while not all(future.done() for future in burst) or not latencies:
                started = time.perf_counter()
                good.append(client.post(f"{service.url}/classify", **image_files(good_png)))
                latencies.append(time.perf_counter() - started)
                time.sleep(0.2)
            answers = [future.result() for future in burst]
    return answers, latencies, good, memory.most_gained


def test_a_burst_of_the_largest_digit_images_leaves_memory_and_latency_bounded(service, digits):
    """Ten at once of the largest digit images the route accepts: 1024x1024 PNGs, and 6000x4000 phone JPEGs
    (accepted because they are decoded at 1/8 of their size)."""
    png = _encoded(_seven((1024, 1024), "RGBA"), "PNG")
    jpeg = _encoded(_seven((6000, 4000)), "JPEG")
    bodies = [image_files(png if index % 2 else jpeg) for index in range(10)]
    answers, latencies, good, gained = _burst_while_timing_a_good_request(
        service, "/classify", bodies, digits.pngs[0]
    )
    print(
        f"\n/classify burst: good request latencies {[round(s, 2) for s in latencies]} s, "
        f"most a process gained {gained / 1e6:.0f} MB"
    )
    assert [answer.status_code for answer in answers] == [200] * 10, answers[0].text
    assert all(response.status_code == 200 for response in good)
    assert max(latencies) < GOOD_ANSWER_S, latencies
    assert gained < MAX_GROWTH


def test_a_burst_of_the_largest_photos_keeps_a_good_request_answered(service, digits):
    """Ten 12.5-MP PNG photos at once on /read (its limit): a worker segments one at a time."""
    photo = _encoded(_seven((4080, 3072)), "PNG")
    bodies = [{"files": {"image": ("photo.png", photo, "image/png")}} for _ in range(10)]
    answers, latencies, good, gained = _burst_while_timing_a_good_request(
        service, "/read", bodies, digits.pngs[0]
    )
    print(
        f"\n/read burst: good request latencies {[round(s, 2) for s in latencies]} s, "
        f"most a process gained {gained / 1e6:.0f} MB"
    )
    assert [answer.status_code for answer in answers] == [200] * 10, answers[0].text
    assert all(answer.json()["text"] == answers[0].json()["text"] for answer in answers)
    assert all(response.status_code == 200 for response in good)
    assert max(latencies) < GOOD_ANSWER_S, latencies


def test_an_image_over_a_digit_routes_limit_is_refused_there_and_read_on_read(service):
    photo = _seven((2000, 1500), "L")  # 3 MP: a photo's size, not a digit image's
    large = png_bytes(photo)
    for route, arguments in {
        "/classify": image_files(large),
        "/digit": {"content": large},
        "/feedback": {**image_files(large), "data": {"labels": "[7]"}},
    }.items():
        response = httpx.post(f"{service.url}{route}", timeout=60, **arguments)
        assert response.status_code == 400, f"{route}: {response.status_code} {response.text}"
        assert DIGIT_PIXEL_LIMIT in response.text, route
    read = httpx.post(f"{service.url}/read", files={"image": ("photo.png", large, "image/png")}, timeout=60)
    assert read.status_code == 200, read.text
    [digit] = read.json()["digits"]
    rows, cols = np.nonzero(np.asarray(photo) < 128)  # the ink, in the photo's own pixels
    ink_box = (cols.min(), rows.min(), np.ptp(cols) + 1, np.ptp(rows) + 1)
    assert digit["box"] == pytest.approx(ink_box, abs=25), digit["box"]  # found at the analysis scale
    huge = png_bytes(Image.new("L", (5000, 5000), 255))  # the 25 MP PNG: over /read's limit too
    refused = httpx.post(f"{service.url}/read", files={"image": ("huge.png", huge, "image/png")}, timeout=60)
    assert refused.status_code == 400 and "the limit is 13,000,000 for a photo" in refused.text
