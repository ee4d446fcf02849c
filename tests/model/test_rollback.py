"""Rollback against a real MLflow registry (sqlite store in a temporary folder) with real Keras models logged
as the train stage logs them: `digitops rollback` moves @champion back to the version it replaced, after
infra validation, with who and why in the registry; the re-packaged bento, served by a real `bentoml
serve`, answers as that version does; promote does not hand the alias back to the version rolled back from.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import keras
import mlflow
import numpy as np
import pytest
import yaml
from mlflow import MlflowClient

from digitops.evaluate import metrics_by_source
from digitops.fingerprint import file_sha256
from digitops.infer.classifier import load_classifier
from digitops.infer.inputs import png_bytes
from digitops.io import save_npz
from digitops.models import build_model
from digitops.preprocess import normalize_digits
from digitops.promote import promote_candidate
from digitops.rollback import ParityDigits, RollbackError, rollback_champion
from digitops.tracking import configure, log_candidate_model
from tests.fakes import random_digits
from tests.model.test_promote_registry import _log, _policy, _probabilities, _reference
from tests.service.conftest import serve_bento

pytestmark = pytest.mark.slow  # a real registry: each promotion logs, registers and downloads a model

REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("registry")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        yield configure("rollback-tests", root)
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def test_split() -> dict[str, np.ndarray]:
    images = random_digits(200, seed=2)
    labels = np.arange(200) % 10
    sources = np.where(np.arange(200) < 150, "mnist", "usps")
    return {"images": images, "labels": labels, "sources": sources}


@pytest.fixture(scope="module")
def weak_and_strong(test_split):
    """An untrained model (chance accuracy) and one fitted to the test digits: their answers differ."""
    keras.utils.set_random_seed(0)
    weak = build_model("seed004")
    strong = build_model("seed004")
    strong.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    strong.fit(test_split["images"], test_split["labels"], epochs=40, batch_size=50, verbose=0)
    return weak, strong


def _promote_run(run_id: str, model, test_split, policy) -> dict:
    metrics = metrics_by_source(
        _probabilities(model, test_split["images"]), test_split["labels"], test_split["sources"], 15
    )
    return promote_candidate(run_id, metrics, _reference(model, test_split), test_split, policy, 15)


def _promote(model, test_split, policy, tmp_path: Path) -> tuple[str, dict]:
    run_id = _log(model, tmp_path / f"model-{len(list(tmp_path.glob('model-*')))}")
    return run_id, _promote_run(run_id, model, test_split, policy)


def _parity_digits(test_split) -> ParityDigits:
    return ParityDigits(test_split["images"], test_split["labels"], known_answers=32, seed=0)


def _version(name: str, version: str):
    return MlflowClient().get_model_version(name, version)


def _champion(name: str) -> str:
    return str(MlflowClient().get_model_version_by_alias(name, "champion").version)


def test_rollback_serves_the_previous_champion_again(
    store, test_split, weak_and_strong, tmp_path, tmp_path_factory
):
    weak, strong = weak_and_strong
    # Named as in params.yaml, so that the service finds the package under the name `make serve` serves:
    # `digits:latest` (digitops.serve.settings). The only test here that uses this name.
    policy = _policy(registered_model="digits")
    name = policy.registered_model
    _promote(weak, test_split, policy, tmp_path)
    _, report = _promote(strong, test_split, policy, tmp_path)
    assert report["promoted"] and _champion(name) == "2"
    promoted = _version(name, "2").tags
    assert promoted["previous_champion"] == "1" and promoted["promoted.at"]
    assert promoted["promoted.reason"] == "promote: the gate passed against version 1"
    assert "previous_champion" not in _version(name, "1").tags

    # `digitops rollback`, as an operator runs it in the repository, with this registry and its own
    # BentoML home and pipeline folders.
    folders = tmp_path / "repo"
    params = yaml.safe_load((REPOSITORY / "params.yaml").read_text())
    params["base"]["paths"].update({key: str(folders / key) for key in ("prepared", "reports", "models")})
    params["promote"].update(registered_model=name, known_answers=32)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    save_npz(folders / "prepared" / "test.npz", **test_split)
    bentoml_home = tmp_path / "bentoml"
    environment = {
        **os.environ,
        "MLFLOW_TRACKING_URI": store,
        "BENTOML_HOME": str(bentoml_home),
        "BENTOML_DO_NOT_TRACK": "true",
        "LOGNAME": "operator-on-call",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    command = [sys.executable, "-m", "digitops.cli", "rollback", "--reason", "sevens read as ones"]
    result = subprocess.run(
        [*command, "--params", str(params_file)],
        cwd=REPOSITORY,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert f"{name}@champion: version 2 -> version 1" in result.stderr

    assert _champion(name) == "1"
    restored, rolled_back = _version(name, "1").tags, _version(name, "2").tags
    assert restored["rolled_back_from"] == "2" and rolled_back["rolled_back_to"] == "1"
    for tags in (restored, rolled_back):
        assert tags["rollback.by"] == "operator-on-call" and tags["rollback.reason"] == "sevens read as ones"
    assert restored["rollback.at"] == rolled_back["rollback.at"]
    assert restored["rollback.validation"] == "passed"
    written = yaml.safe_load((folders / "reports" / "rollback.json").read_text())
    assert written["from"] == "2" and written["to"] == "1"
    assert written["infra_validation"]["passed"] and written["infra_validation"]["digits"] == 200

    # The packaged model is version 1's ONNX file, byte for byte.
    model_name, model_version = written["package"]["bento_model"].split(":")
    packaged = bentoml_home / "models" / model_name / model_version
    assert yaml.safe_load((packaged / "model.yaml").read_text())["labels"]["mlflow_version"] == "1"
    assert file_sha256(packaged / "model.onnx") == restored["model_sha256"] != rolled_back["model_sha256"]

    # Served over HTTP, the bento answers as version 1 does, not as version 2.
    images = test_split["images"][:20]
    version_1 = load_classifier(
        Path(mlflow.artifacts.download_artifacts(f"models:/{name}/1", dst_path=str(tmp_path / "v1")))
    )
    expected = version_1(normalize_digits(images))  # the service normalises every upload
    replaced = _probabilities(strong, normalize_digits(images))
    files = [
        ("images", (f"digit{index}.png", png_bytes(image), "image/png")) for index, image in enumerate(images)
    ]
    with serve_bento(written["package"]["bento"], environment, tmp_path_factory, {}) as service:
        response = httpx.post(f"{service.url}/classify", files=files, timeout=60)
    assert response.status_code == 200, response.text
    answers = response.json()
    assert {answer["model_version"] for answer in answers} == {f"{name}/1"}
    served = np.array([answer["probabilities"] for answer in answers])
    np.testing.assert_allclose(served, expected, atol=1e-5)
    assert np.abs(served - replaced).max() > 0.1


def test_rollback_without_a_previous_champion_or_a_target_is_refused(
    store, test_split, weak_and_strong, tmp_path
):
    weak, _ = weak_and_strong
    policy = _policy()
    name = policy.registered_model
    arguments = dict(reason="test", by="tester", test=_parity_digits(test_split), tolerance=1e-4)
    with pytest.raises(RollbackError, match=rf"no champion to roll back: {name}@champion does not resolve"):
        rollback_champion(name, to=None, **arguments)
    _promote(weak, test_split, policy, tmp_path)
    with pytest.raises(RollbackError, match=r"version 1 \(@champion\) has no previous_champion tag.*--to"):
        rollback_champion(name, to=None, **arguments)
    with pytest.raises(RollbackError, match=rf"{name} has no version '7' \(versions: 1\)"):
        rollback_champion(name, to="7", **arguments)
    with pytest.raises(RollbackError, match=r"version 1 is already @champion"):
        rollback_champion(name, to="1", **arguments)
    assert _champion(name) == "1"
    assert not any(key.startswith("rollback.") for key in _version(name, "1").tags)


def test_a_target_that_fails_infra_validation_again_is_refused(store, test_split, weak_and_strong, tmp_path):
    weak, strong = weak_and_strong
    policy = _policy()
    name = policy.registered_model
    weak_run, _ = _promote(weak, test_split, policy, tmp_path)
    _promote(strong, test_split, policy, tmp_path)
    # Version 1's stored ONNX file is damaged after it was promoted (a storage fault, a bad copy).
    (logged,) = mlflow.search_logged_models(
        filter_string=f"source_run_id = '{weak_run}'", output_format="list"
    )
    stored = Path(logged.artifact_location.removeprefix("file://")) / "model.onnx"
    stored.write_bytes(stored.read_bytes()[:1000])
    with pytest.raises(RollbackError, match=r"version 1 failed infra validation again .*ONNX Runtime cannot"):
        rollback_champion(
            name, to=None, reason="test", by="tester", test=_parity_digits(test_split), tolerance=1e-4
        )
    assert _champion(name) == "2"
    assert "rolled_back_to" not in _version(name, "2").tags


def test_promote_does_not_give_the_alias_back_to_a_rolled_back_version(
    store, test_split, weak_and_strong, tmp_path
):
    weak, strong = weak_and_strong
    policy = _policy()
    name = policy.registered_model
    _promote(weak, test_split, policy, tmp_path)
    strong_run, _ = _promote(strong, test_split, policy, tmp_path)
    rollback_champion(
        name, to=None, reason="bad on the page", by="tester", test=_parity_digits(test_split), tolerance=1e-4
    )
    assert _champion(name) == "1"

    # `dvc repro` reruns promote on the same run (a promote parameter changed): the gate passes, but the
    # version @champion was rolled back from gets no alias.
    report = _promote_run(strong_run, strong, test_split, policy)
    assert not report["promoted"] and report["alias"] is None and report["champion"] == "1"
    assert any(reason.startswith("pass: overall accuracy") for reason in report["reasons"])
    assert report["reasons"][-1].startswith("FAIL: it is version 2, which @champion was rolled back from on ")
    assert "by tester (bad on the page)" in report["reasons"][-1]
    assert _champion(name) == "1" and _version(name, "2").aliases == []
    assert _version(name, "2").tags["decision"] == "refused: rolled back"

    # The same ONNX file logged by a new run (the same candidate logged again) is refused as well.
    exported = tmp_path / "model-1"  # where _log exported the strong model
    with mlflow.start_run() as run:
        log_candidate_model(
            exported / "model.onnx", exported / "model.keras", input_example=np.zeros((1, 28, 28), np.uint8)
        )
    again = _promote_run(run.info.run_id, strong, test_split, policy)
    assert _version(name, "3").tags["model_sha256"] == _version(name, "2").tags["model_sha256"]
    assert not again["promoted"] and again["alias"] is None
    assert again["reasons"][-1].startswith("FAIL: its ONNX file is that of version 2, which @champion")
    assert _champion(name) == "1"

    # Chosen by hand, it serves again and is no longer barred.
    rollback_champion(
        name, to="2", reason="fixed the page", by="tester", test=_parity_digits(test_split), tolerance=1e-4
    )
    assert _champion(name) == "2" and "rolled_back_to" not in _version(name, "2").tags
    assert _version(name, "1").tags["rolled_back_to"] == "2"


def test_the_cli_refuses_a_rollback_without_a_reason_or_a_test_split(tmp_path, monkeypatch, capsys):
    from digitops.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["rollback"])
    assert exit_info.value.code == 2
    params = yaml.safe_load((REPOSITORY / "params.yaml").read_text())
    params["base"]["paths"].update(prepared=str(tmp_path / "prepared"), models=str(tmp_path / "models"))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'unused.db'}")
    assert main(["rollback", "--reason", "test", "--params", str(tmp_path / "params.yaml")]) == 1
    assert f"error: no test split at {tmp_path / 'prepared' / 'test.npz'}" in capsys.readouterr().err
