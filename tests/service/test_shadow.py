"""The shadow challenger through a real `bentoml build` and `bentoml serve`: the bento ships the challenger
packaged with its champion; served with `serve.shadow_fraction` 1.0, every answer is the one the same bento
gives with 0, the agreement and confidence metrics appear in /metrics, and a challenger that raises is
logged and counted while the responses stay as they were."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import keras
import numpy as np
import pytest
import yaml

from digitops.export import export_onnx
from digitops.infer.classifier import load_classifier
from digitops.infer.inputs import png_bytes
from digitops.models import build_model
from digitops.preprocess import normalize_digits
from tests.fakes import random_digits, single_digit_onnx
from tests.service.conftest import serve_bento

pytestmark = pytest.mark.slow  # builds a bento and serves it twice

REPOSITORY = Path(__file__).resolve().parents[2]

# In the BentoML home of the environment: the champion, and a challenger labelled with the champion's tag as
# digitops.package.import_challenger labels it, then the bento, built by digitops.package.build_bento.
_STORE_AND_BUILD = """
import json, shutil, sys
from pathlib import Path
import bentoml
from digitops.package import build_bento
champion_file, challenger_file = sys.argv[1:]
labels = {"registered_model": "digits", "mlflow_version": "1"}
with bentoml.models.create("digits", labels=labels) as champion:
    shutil.copyfile(champion_file, champion.path_of("model.onnx"))
labels = {"registered_model": "digits", "mlflow_version": "2", "champion": str(champion.tag)}
with bentoml.models.create("digits-challenger", labels=labels) as challenger:
    shutil.copyfile(challenger_file, challenger.path_of("model.onnx"))
bento = build_bento(Path("bentofile.yaml"), str(champion.tag))
print(json.dumps({"champion": str(champion.tag), "challenger": str(challenger.tag), "bento": bento}))
"""


@pytest.fixture(scope="module")
def shadow_bento(tmp_path_factory):
    """A bento of an (untrained) champion and a challenger that reads 3s one digit at a time and raises on
    a batch (tests.fakes.single_digit_onnx), in a BentoML home of its own; the champion's ONNX file."""
    root = tmp_path_factory.mktemp("shadow")
    keras.utils.set_random_seed(0)
    champion_file = root / "champion.onnx"
    export_onnx(build_model("seed004"), champion_file)
    challenger_file = single_digit_onnx(root / "challenger.onnx", digit=3)
    environment = {
        **os.environ,
        "BENTOML_HOME": str(root / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    result = subprocess.run(
        [sys.executable, "-c", _STORE_AND_BUILD, str(champion_file), str(challenger_file)],
        cwd=REPOSITORY,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    tags = json.loads(result.stdout.splitlines()[-1])
    return tags, environment, champion_file


def _params(tmp_path: Path, fraction: float) -> Path:
    params = yaml.safe_load((REPOSITORY / "params.yaml").read_text())
    params["serve"].update(workers=1, shadow_fraction=fraction)  # one worker: one model pair on 2 cores
    path = tmp_path / f"params-{fraction}.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def _ask(url: str, images: np.ndarray) -> list:
    """Four single-digit requests, one of all the digits (the challenger raises on it), four more single
    ones, and all the digits again on the lean /digits route (raw bytes): every answer."""
    pngs = [png_bytes(image) for image in images]
    answers = []
    for batch in [pngs[i : i + 1] for i in range(4)] + [pngs] + [pngs[i : i + 1] for i in range(4, 8)]:
        files = [("images", (f"d{index}.png", data, "image/png")) for index, data in enumerate(batch)]
        response = httpx.post(f"{url}/classify", files=files, timeout=60)
        assert response.status_code == 200, response.text
        answers.append(response.json())
    response = httpx.post(f"{url}/digits", content=normalize_digits(images).tobytes(), timeout=60)
    assert response.status_code == 200, response.text
    return [*answers, response.json()]


def _metric(text: str, sample: str) -> float:
    """The value of one sample line of /metrics (0 when absent)."""
    found = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    return float(found[1]) if found else 0.0


def test_the_bento_ships_the_challenger_packaged_with_its_champion(shadow_bento):
    tags, environment, _ = shadow_bento
    result = subprocess.run(
        ["bentoml", "get", tags["bento"], "-o", "json"], env=environment, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    bento = json.loads(result.stdout)
    shipped = {entry["tag"] for service in bento["services"] for entry in service["models"]}
    assert shipped == {tags["champion"], tags["challenger"]}


def test_shadowing_changes_no_answer_and_survives_a_challenger_that_raises(
    shadow_bento, tmp_path, tmp_path_factory
):
    tags, environment, champion_file = shadow_bento
    images = random_digits(12, seed=5)
    # Two services on one BentoML home must not run at once (each empties the home's metrics folder).
    with serve_bento(
        tags["bento"], environment, tmp_path_factory, {"DIGITOPS_PARAMS": str(_params(tmp_path, 0.0))}
    ) as unshadowed:
        without = _ask(unshadowed.url, images)
        metrics = httpx.get(f"{unshadowed.url}/metrics", timeout=10).text
        log = unshadowed.log.read_text()
    assert "digitops_shadow_agreement_total{" not in metrics and "shadowing" not in log

    with serve_bento(
        tags["bento"], environment, tmp_path_factory, {"DIGITOPS_PARAMS": str(_params(tmp_path, 1.0))}
    ) as shadowed:
        answers = _ask(shadowed.url, images)
        # The challenger runs after the answers are sent: wait until the eight single digits are recorded.
        deadline = time.monotonic() + 60
        while True:
            metrics = httpx.get(f"{shadowed.url}/metrics", timeout=10).text
            recorded = sum(
                _metric(metrics, f'digitops_shadow_agreement_total{{result="{result}"}}')
                for result in ("agree", "disagree")
            )
            if recorded >= 8 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        log = shadowed.log.read_text()

    assert answers == without  # shadowing changed no answer, not even the batches the challenger raised on
    expected = load_classifier(champion_file)(normalize_digits(images))
    np.testing.assert_allclose([row["probabilities"] for row in answers[4]], expected, atol=1e-5)
    assert {row["model_version"] for answer in answers for row in answer} == {"digits/1"}

    assert recorded == 8, metrics  # the single digits before and after the failure: the thread survived
    champion_threes = sum(int(row.argmax() == 3) for row in expected[:8])
    assert _metric(metrics, 'digitops_shadow_agreement_total{result="agree"}') == champion_threes
    for model in ("champion", "challenger"):
        assert _metric(metrics, f'digitops_shadow_confidence_count{{model="{model}"}}') == 8
    assert _metric(metrics, 'digitops_shadow_confidence_sum{model="challenger"}') == pytest.approx(8 * 0.55)
    assert _metric(metrics, 'digitops_shadow_errors_total{stage="predict"}') == 2  # both batches
    assert _metric(metrics, "digitops_shadow_dropped_total") == 0
    assert "digitops: shadowing digits/2 (digits-challenger:" in log and "on 100% of requests" in log
    assert "shadow challenger digits/2 failed to predict (Fail: [ONNXRuntimeError]" in log
