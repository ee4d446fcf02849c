"""The service under generated, hostile and sustained load: a real `bentoml serve` of the smoke bento.

- the lean routes (`/digit`, `/digits`) give the model's own answers;
- fuzzing: schemathesis generates requests from the service's own OpenAPI document, and Hypothesis
  generates bodies for the routes the document cannot describe (raw images, raw arrays): no 5xx but the
  documented 503 back-pressure, and the server still answers at the end;
- the API contract: schemathesis's own CLI, with every check, finds nothing: the document says what the
  service takes and answers (required fields, counts, every error status and its body);
- hostile inputs: each a clear 4xx, none keeping a good request waiting for long;
- a short soak: 60 s at 64 concurrent clients, no failed request, resident memory flat.
The 10-minute soak is a benchmark (bench/soak.py).
"""

from __future__ import annotations

import asyncio
import collections
import io
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from PIL import Image

from digitops.infer.inputs import png_bytes
from tests.fakes import image_files, png_claiming_size

pytestmark = [pytest.mark.pipeline, pytest.mark.slow]

ACCEPTED = {200, 400, 413, 503}  # answers, client errors that say why, documented back-pressure
FUZZ_SETTINGS = settings(
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.generate],
    derandomize=True,  # the same requests on every run
    database=None,
)


def _post_digit(url: str, body: bytes, content_type: str = "image/png") -> httpx.Response:
    return httpx.post(f"{url}/digit", content=body, headers={"Content-Type": content_type}, timeout=30)


def _alive(url: str, digits) -> None:
    assert httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    response = _post_digit(url, digits.pngs[0])
    assert response.status_code == 200
    assert response.json()["digit"] == int(digits.expected[0].argmax())


def test_digit_route_gives_the_models_answers(service, digits):
    for index in range(20):
        response = _post_digit(service.url, digits.pngs[index])
        assert response.status_code == 200
        result = response.json()
        np.testing.assert_allclose(result["probabilities"], digits.expected[index], atol=1e-5)
        assert result["digit"] == int(digits.expected[index].argmax())


def test_digits_route_takes_a_uint8_array(service, digits, served_model):
    """Digits already in MNIST format, as raw (N, 28, 28) uint8 bytes: no decoding, no normaliser."""
    batch = digits.images[:100]
    response = httpx.post(f"{service.url}/digits", content=batch.tobytes(), timeout=30)
    assert response.status_code == 200
    results = response.json()
    assert len(results) == 100
    np.testing.assert_allclose([r["probabilities"] for r in results], served_model(batch), atol=1e-5)


def test_fuzz_from_the_openapi_document_and_generated_bodies(service, digits):
    statuses: collections.Counter = collections.Counter()
    server_errors: list[str] = []

    def record(label: str, response) -> None:
        statuses[response.status_code] += 1
        if response.status_code not in ACCEPTED:
            server_errors.append(f"{label} -> {response.status_code}: {response.text[:200]}")

    schema = schemathesis.openapi.from_url(f"{service.url}/docs.json")

    @given(case=schema.as_strategy())
    @settings(FUZZ_SETTINGS, max_examples=700)
    def from_openapi(case) -> None:
        record(case.operation.label, case.call(timeout=30))

    def random_png(width: int, height: int, mode: str, seed: int) -> bytes:
        pixels = np.random.default_rng(seed).integers(0, 256, (height, width), dtype=np.uint8)
        return png_bytes(Image.fromarray(pixels).convert(mode))

    images = st.builds(
        random_png,
        st.integers(1, 300),
        st.integers(1, 300),
        st.sampled_from(["L", "RGB", "RGBA", "1", "P", "I;16"]),
        st.integers(0, 2**32 - 1),
    )
    bodies = st.one_of(
        st.binary(max_size=2000),
        images,
        images.flatmap(lambda png: st.integers(0, len(png)).map(lambda cut: png[:cut])),  # truncated
        st.binary(min_size=784, max_size=784 * 3),  # for /digits: whole digits or not
    )

    @given(
        route=st.sampled_from(["/digit", "/digits"]),
        body=bodies,
        content_type=st.sampled_from(
            ["image/png", "image/jpeg", "application/octet-stream", "text/plain", "application/json"]
        ),
    )
    @settings(FUZZ_SETTINGS, max_examples=300)
    def lean_routes(route: str, body: bytes, content_type: str) -> None:
        response = httpx.post(
            f"{service.url}{route}", content=body, headers={"Content-Type": content_type}, timeout=30
        )
        record(f"POST {route}", response)

    from_openapi()
    lean_routes()
    assert sum(statuses.values()) >= 1000, statuses
    assert server_errors == [], server_errors[:10]
    assert statuses[400] > 0  # the generated garbage was refused, not silently answered
    assert service.egress.requests == []  # no generated request made the service fetch anything
    _alive(service.url, digits)


SCHEMATHESIS_CONFIG = Path(__file__).with_name("schemathesis.toml")  # the one check setting, and why


def test_schemathesis_cli_with_every_check_finds_nothing(service, digits, tmp_path):
    """`schemathesis run <url>/docs.json --checks all --max-examples 50`, as anyone would run it against
    the service: the same requests on every run (a seed, one worker, no example database) and a timeout per
    request and for the whole run."""
    command = [
        str(Path(sys.executable).with_name("schemathesis")),  # the CLI the dev lock installs
        "--config-file",
        str(SCHEMATHESIS_CONFIG),
        "run",
        f"{service.url}/docs.json",
        "--checks",
        "all",
        "--max-examples",
        "50",
        "--seed",
        "17",
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--generation-database",
        "none",
        "--no-color",
    ]
    egress_before = len(service.egress.requests)
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    output = f"{' '.join(command)} -> {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert result.returncode == 0, output
    assert "passed" in result.stdout, output  # it ran test cases (an empty document would not)
    assert service.egress.requests[egress_before:] == []
    _alive(service.url, digits)


def _jpeg(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


# case: (route, request arguments given a good PNG, expected status, a phrase the answer must contain)
HOSTILE = {
    "truncated png": ("/digit", lambda png: {"content": png[: len(png) // 2]}, 400, "truncated or corrupt"),
    "huge dimensions": (
        "/digit",
        lambda png: {"content": png_bytes(Image.new("L", (6000, 6000)))},
        400,
        "the limit is 1,048,576 for a digit image",
    ),
    "decompression bomb": (
        "/digit",
        lambda png: {"content": png_claiming_size(200_000, 200_000)},
        400,
        "pixels",
    ),
    "wrong content type": (
        "/digit",
        lambda png: {"content": b'{"digit": 7}', "headers": {"Content-Type": "application/json"}},
        400,
        "not an image",
    ),
    "100 MB body": ("/digit", lambda png: {"content": b"\0" * 100_000_000}, 413, "the limit is 20,000,000"),
    "100 MB multipart": ("/classify", lambda png: image_files(b"\0" * 100_000_000), 413, "limit"),
    "25 MB multipart sent chunked, without a length": (
        "/classify",
        lambda png: {
            "content": [  # an iterable body: httpx streams it with Transfer-Encoding: chunked
                b'--b\r\nContent-Disposition: form-data; name="images"; filename="a.png"\r\n\r\n',
                *[b"\0" * 1_000_000] * 25,
                b"\r\n--b--\r\n",
            ],
            "headers": {"Content-Type": "multipart/form-data; boundary=b"},
        },
        413,
        "the request body is too large; the limit is 20,000,000",
    ),
    "a thousand images": (
        "/classify",
        lambda png: image_files(*[png] * 1000),
        400,
        "1000 images in one request; the limit is 256",
    ),
    "a thousand digits as an array": ("/digits", lambda png: {"content": b"\0" * 784 * 1000}, 400, "limit"),
    "not a whole digit": ("/digits", lambda png: {"content": b"\0" * 1000}, 400, "expected N x 784 bytes"),
    "jpeg that is fine": (
        "/digit",
        lambda png: {"content": _jpeg(np.asarray(Image.open(io.BytesIO(png))))},
        200,
        "digit",
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_input_gets_a_clear_answer_and_good_requests_go_on(service, digits, case):
    route, build, status, phrase = HOSTILE[case]
    arguments = build(digits.pngs[0])
    arguments.setdefault("headers", {"Content-Type": "image/png"} if route == "/digit" else {})

    def hostile() -> httpx.Response:
        return httpx.post(f"{service.url}{route}", timeout=60, **arguments)

    with ThreadPoolExecutor(max_workers=4) as pool:  # three hostile requests while a good one is timed
        pending = [pool.submit(hostile) for _ in range(3)]
        started = time.perf_counter()
        good = _post_digit(service.url, digits.pngs[1])
        good_seconds = time.perf_counter() - started
        answers = [future.result() for future in pending]
    for response in answers:
        assert response.status_code == status, response.text[:300]
        assert phrase in response.text
    assert good.status_code == 200
    assert good_seconds < 5, f"a good request waited {good_seconds:.1f} s behind hostile ones"
    _alive(service.url, digits)


def _worker_rss(pid: int) -> int:
    """Resident bytes of the service's worker processes (the model holders)."""
    return sum(
        child.memory_info().rss
        for child in psutil.Process(pid).children(recursive=True)
        if "worker" in " ".join(child.cmdline())
    )


def test_short_soak_64_concurrent_clients_no_failures_and_flat_memory(service, digits):
    """60 s of single-image requests from 64 concurrent clients: every answer right, memory flat after
    warm-up (within 10%). The 10-minute version is bench/soak.py."""
    pngs, expected = digits.pngs[:200], digits.expected[:200].argmax(axis=1)

    async def clients(seconds: float) -> tuple[int, list[str]]:
        failures: list[str] = []
        done = 0
        deadline = time.monotonic() + seconds
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=service.url, timeout=60, limits=limits) as client:

            async def one_client(number: int) -> None:
                nonlocal done
                index = number
                while time.monotonic() < deadline:
                    response = await client.post(
                        "/digit", content=pngs[index % 200], headers={"Content-Type": "image/png"}
                    )
                    if response.status_code != 200:
                        failures.append(f"{response.status_code}: {response.text[:100]}")
                    elif response.json()["digit"] != expected[index % 200]:
                        failures.append(f"wrong answer for test digit {index % 200}")
                    done += 1
                    index += 64

            await asyncio.gather(*(one_client(number) for number in range(64)))
        return done, failures

    asyncio.run(clients(10))  # warm-up: batch sizes, allocator pools, connections
    baseline = _worker_rss(service.pid)
    samples = []

    async def sample_memory(seconds: float) -> None:
        for _ in range(int(seconds // 5)):
            await asyncio.sleep(5)
            samples.append(_worker_rss(service.pid))

    async def soak() -> tuple[int, list[str]]:
        result, _ = await asyncio.gather(clients(60), sample_memory(60))
        return result

    requests, failures = asyncio.run(soak())
    assert failures == [], failures[:10]
    assert requests > 1000
    growth = max(samples) / baseline - 1
    assert growth < 0.10, f"resident memory grew {growth:.1%} over the soak ({baseline} -> {samples})"
