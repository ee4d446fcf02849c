"""The shadow challenger's runner with real ONNX Runtime models: it samples the fraction it is given, never
blocks or raises into the caller, drops what its queue cannot hold, and counts and logs a challenger that
raises or does not load (the metrics are read from Prometheus' registry, where BentoML's land)."""

from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from prometheus_client import REGISTRY

from digitops.infer.classifier import load_classifier
from digitops.serve.shadow import Shadow
from tests.fakes import REPO_ROOT, float_input_onnx, random_digits, single_digit_onnx

DIGITS = random_digits(4, seed=3)  # (4, 28, 28) uint8


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _agreement() -> float:
    return sum(_sample("digitops_shadow_agreement_total", result=r) for r in ("agree", "disagree"))


def _wait_for(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("the shadow thread did not get there in time")
        time.sleep(0.01)


def _answers(digit: int, count: int) -> np.ndarray:
    """(count, 10) probabilities that read `digit` with confidence 0.91."""
    probabilities = np.full((count, 10), 0.01, np.float32)
    probabilities[:, digit] = 0.91
    return probabilities


def test_agreement_and_both_confidences_are_recorded_per_digit(tmp_path):
    challenger = load_classifier(single_digit_onnx(tmp_path / "reads-3.onnx", digit=3))
    agree, disagree = (
        _sample("digitops_shadow_agreement_total", result="agree"),
        _sample("digitops_shadow_agreement_total", result="disagree"),
    )
    champion_count = _sample("digitops_shadow_confidence_count", model="champion")
    challenger_sum = _sample("digitops_shadow_confidence_sum", model="challenger")
    shadow = Shadow(challenger, 1.0, "test/1")
    shadow.offer(DIGITS[:1], _answers(3, 1))  # the champion reads 3 too
    shadow.offer(DIGITS[1:2], _answers(5, 1))
    shadow.offer(DIGITS[2:3], _answers(5, 1))
    _wait_for(lambda: _sample("digitops_shadow_confidence_count", model="champion") == champion_count + 3)
    assert _sample("digitops_shadow_agreement_total", result="agree") == agree + 1
    assert _sample("digitops_shadow_agreement_total", result="disagree") == disagree + 2
    # The challenger's confidence is its own (0.55 for its 3), the champion's is the champion's (0.91).
    assert _sample("digitops_shadow_confidence_sum", model="challenger") == pytest.approx(
        challenger_sum + 3 * 0.55
    )
    assert _sample("digitops_shadow_confidence_bucket", model="champion", le="0.95") >= 3


def test_a_challenger_that_raises_is_counted_and_logged_and_the_next_request_is_shadowed(tmp_path, caplog):
    challenger = load_classifier(single_digit_onnx(tmp_path / "reads-3.onnx", digit=3))
    errors, agreed = _sample("digitops_shadow_errors_total", stage="predict"), _agreement()
    shadow = Shadow(challenger, 1.0, "test/2")
    with caplog.at_level(logging.WARNING, logger="digitops.serve.shadow"):
        shadow.offer(DIGITS, _answers(3, len(DIGITS)))  # a batch: this challenger raises on it
        shadow.offer(DIGITS[:1], _answers(3, 1))
        _wait_for(lambda: _agreement() == agreed + 1)
    assert _sample("digitops_shadow_errors_total", stage="predict") == errors + 1
    assert "shadow challenger test/2 failed to predict (Fail: [ONNXRuntimeError]" in caplog.text
    assert "responses are not affected" in caplog.text


def test_an_answer_of_the_wrong_shape_is_a_failure_not_a_record():
    errors, agreed = _sample("digitops_shadow_errors_total", stage="predict"), _agreement()
    shadow = Shadow(lambda digits: np.zeros((len(digits), 3), np.float32), 1.0, "test/3")
    shadow.offer(DIGITS, _answers(1, len(DIGITS)))
    _wait_for(lambda: _sample("digitops_shadow_errors_total", stage="predict") == errors + 1)
    assert _agreement() == agreed


def test_offer_never_waits_for_a_slow_challenger_and_a_full_queue_drops(tmp_path):
    started, release = threading.Event(), threading.Event()

    def slow(digits: np.ndarray) -> np.ndarray:
        started.set()
        release.wait(30)
        return _answers(0, len(digits))

    dropped, agreed = _sample("digitops_shadow_dropped_total"), _agreement()
    shadow = Shadow(slow, 1.0, "test/4", queue_requests=2)
    shadow.offer(DIGITS[:1], _answers(0, 1))
    assert started.wait(30)  # the challenger holds the first request; two more fit in the queue
    began = time.monotonic()
    for _ in range(5):
        shadow.offer(DIGITS[:1], _answers(0, 1))
    offering = time.monotonic() - began
    release.set()
    assert offering < 1, "offer waited for the challenger"
    assert _sample("digitops_shadow_dropped_total") == dropped + 3
    _wait_for(lambda: _agreement() == agreed + 3)


def test_the_fraction_of_requests_shadowed_is_the_one_given():
    seen = []
    draws = random.Random(7)
    shadow = Shadow(
        lambda digits: seen.append(len(digits)) or _answers(0, len(digits)),
        0.25,
        "test/5",
        queue_requests=1000,
        draw=draws.random,
    )
    for _ in range(400):
        shadow.offer(DIGITS[:1], _answers(0, 1))
    replay = random.Random(7)
    expected = sum(replay.random() < 0.25 for _ in range(400))
    _wait_for(lambda: len(seen) == expected)
    assert 60 < expected < 140
    never = Shadow(lambda digits: seen.append(-1), 0.0, "test/6")
    for _ in range(50):
        never.offer(DIGITS[:1], _answers(0, 1))
    time.sleep(0.2)
    assert -1 not in seen
    with pytest.raises(ValueError, match=r"a share of requests in \[0, 1\], got 1.5"):
        Shadow(lambda digits: digits, 1.5, "test/7")


# In a process of its own, with BENTOML_HOME a temporary store: a challenger stored under the name given,
# then start_shadow on it. Prints whether a shadow started and the load errors counted.
_START = """
import json, shutil, sys
import bentoml
from prometheus_client import REGISTRY
from digitops.serve.shadow import start_shadow
model_file, fraction = sys.argv[1], float(sys.argv[2])
labels = {"registered_model": "digits", "mlflow_version": "2"}
with bentoml.models.create("digits-challenger", labels=labels) as stored:
    shutil.copyfile(model_file, stored.path_of("model.onnx"))
shadow = start_shadow(str(stored.tag), fraction)
errors = REGISTRY.get_sample_value("digitops_shadow_errors_total", {"stage": "load"}) or 0
print(json.dumps({"started": shadow is not None, "load_errors": errors}))
"""


def _start(model_file, fraction: float, tmp_path) -> tuple[dict, str]:
    environment = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"}
    result = subprocess.run(
        [sys.executable, "-c", _START, str(model_file), str(fraction)],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1]), result.stdout + result.stderr


def test_a_challenger_that_does_not_load_is_logged_and_counted_and_nothing_is_shadowed(tmp_path):
    answer, output = _start(float_input_onnx(tmp_path / "float.onnx"), 1.0, tmp_path)
    assert answer == {"started": False, "load_errors": 1.0}
    assert "shadow challenger digits-challenger:" in output
    assert "failed to load (ModelFileError: " in output and "not (B, 28, 28) uint8 digits" in output
    assert "serving the champion alone" in output


def test_a_challenger_that_loads_starts_only_with_a_fraction_above_zero(tmp_path):
    model_file = single_digit_onnx(tmp_path / "reads-3.onnx", digit=3)
    answer, output = _start(model_file, 0.5, tmp_path)
    assert answer == {"started": True, "load_errors": 0}
    assert "digitops: shadowing digits/2 (digits-challenger:" in output and "on 50% of requests" in output
    answer, output = _start(model_file, 0.0, tmp_path)
    assert answer == {"started": False, "load_errors": 0} and "shadowing" not in output
