"""Drift gauges of a real `bentoml serve` of the smoke bento: the reference profile made by the smoke run's
train stage travels through the registry and the package stage into the bento, and the gauges in /metrics
move when shifted digits arrive and stay low for the test split's."""

from __future__ import annotations

import re

import httpx
import numpy as np
import pytest
import yaml

from digitops.infer.inputs import png_bytes
from digitops.monitoring import FEATURES
from digitops.preprocess import normalize_digits
from tests.fakes import image_files
from tests.service.conftest import serve_bento

pytestmark = [pytest.mark.pipeline, pytest.mark.slow]

WINDOW = 500  # digits in the monitored service's window (one worker: every digit goes into it)
CHUNK = 250  # digits per request: a multiple of the update interval, so the gauges end up current
MONITORING = {"workers": 1, "drift_window": WINDOW, "drift_update_every": 50, "low_confidence": 0.8}


def _gauges(url: str) -> dict[str, float]:
    """The drift gauges in /metrics: `psi.<feature>`, `low_confidence_rate`, `drift_window_digits`, of the
    worker whose window holds the most digits (each worker publishes its own series, label `pid`)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    workers: dict[str, dict[str, float]] = {}
    for match in re.finditer(
        r"^digitops_(drift_psi|low_confidence_rate|drift_window_digits)\{([^}]*)\} (\S+)$", text, re.MULTILINE
    ):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2)))
        name = f"psi.{labels['feature']}" if match.group(1) == "drift_psi" else match.group(1)
        workers.setdefault(labels.get("pid", ""), {})[name] = float(match.group(3))
    return max(workers.values(), key=lambda gauges: gauges.get("drift_window_digits", 0.0), default={})


def _send_raw(url: str, digits: np.ndarray) -> None:
    """POST /digits, CHUNK at a time: digits as the client framed them (the service does not normalise)."""
    for start in range(0, len(digits), CHUNK):
        response = httpx.post(f"{url}/digits", content=digits[start : start + CHUNK].tobytes(), timeout=60)
        assert response.status_code == 200, response.text


def _send_pngs(url: str, pngs: list[bytes]) -> None:
    """POST /classify, CHUNK files at a time: uploads the service decodes and normalises."""
    for start in range(0, len(pngs), CHUNK):
        response = httpx.post(f"{url}/classify", **image_files(*pngs[start : start + CHUNK]), timeout=120)
        assert response.status_code == 200, response.text


def _thick(digits: np.ndarray) -> np.ndarray:
    """Each digit's ink grown by one pixel on every side (a 3x3 maximum): drawn with a broad pen."""
    padded = np.pad(digits, ((0, 0), (1, 1), (1, 1)))
    return np.max([padded[:, 1 + y : 29 + y, 1 + x : 29 + x] for y in (-1, 0, 1) for x in (-1, 0, 1)], axis=0)


@pytest.fixture(scope="module")
def monitored(smoke_repo, tmp_path_factory):
    """The smoke bento served by one worker with a window of WINDOW digits."""
    params = yaml.safe_load((smoke_repo.path / "params.yaml").read_text())
    params["serve"].update(MONITORING)
    path = tmp_path_factory.mktemp("drift") / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    with serve_bento(smoke_repo.bento, smoke_repo.env, tmp_path_factory, {"DIGITOPS_PARAMS": str(path)}) as s:
        yield s


@pytest.fixture(scope="module")
def window_digits(digits) -> np.ndarray:
    """WINDOW digits of the smoke test split, normalised as the service normalises uploads, mixed."""
    order = np.random.default_rng(0).permutation(len(digits.images))[:WINDOW]
    assert len(order) == WINDOW
    return normalize_digits(digits.images[order])


def test_drift_gauges_stay_low_for_test_digits_and_move_for_shifted_ones(monitored, window_digits):
    assert "drift monitoring off" not in monitored.log.read_text()

    _send_raw(monitored.url, window_digits)
    stable = _gauges(monitored.url)
    assert stable["drift_window_digits"] == WINDOW
    assert {f"psi.{feature}" for feature in FEATURES} <= set(stable)
    # The smoke test split against the smoke training split: the same sources, other digits.
    for feature in ("ink_mass", "aspect", "centre_offset", "stroke_width"):
        assert stable[f"psi.{feature}"] < 0.1, stable
    assert stable["psi.confidence"] < 0.25 and stable["psi.predicted_digit"] < 0.25, stable

    # Thick strokes, uploaded as PNGs: the normaliser fits them into the same box, and they stay thick.
    _send_pngs(monitored.url, [png_bytes(digit) for digit in _thick(window_digits)])
    thick = _gauges(monitored.url)
    assert thick["psi.stroke_width"] > 0.25 and thick["psi.ink_mass"] > 0.25, thick

    # Off-centre digits from a client that frames them itself (an upload would be re-centred).
    _send_raw(monitored.url, np.roll(window_digits, (3, 4), axis=(1, 2)))
    moved = _gauges(monitored.url)
    assert moved["psi.centre_offset"] > 0.25, moved
    assert moved["low_confidence_rate"] > stable["low_confidence_rate"], (moved, stable)

    _send_raw(monitored.url, window_digits)  # the window slides back
    assert _gauges(monitored.url)["psi.centre_offset"] == pytest.approx(stable["psi.centre_offset"])


def test_the_bento_serves_with_its_reference_profile_and_publishes_the_gauges(service, digits):
    """The bento as the pipeline built it (two workers, params.yaml's window): gauges once a worker has
    served an update's worth of digits."""
    response = httpx.post(f"{service.url}/digits", content=normalize_digits(digits.images[:256]).tobytes())
    assert response.status_code == 200
    gauges = _gauges(service.url)
    assert {f"psi.{feature}" for feature in FEATURES} <= set(gauges), gauges
    assert gauges["drift_window_digits"] > 0 and 0 <= gauges["low_confidence_rate"] <= 1
    assert "drift monitoring off" not in service.log.read_text()
