"""Packaging against a real MLflow registry (sqlite store in a temporary folder) and a real BentoML model
store (a temporary BENTOML_HOME): only a version that passed infra validation ships, whatever the
champion alias says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest
import yaml
from mlflow import MlflowClient

from digitops.export import export_onnx
from digitops.infer.reader import optional_reader
from digitops.models import build_model
from digitops.monitoring import PROFILE_FILE, reference_profile
from digitops.reader import build_reader, export_reader_onnx
from digitops.reader_registry import log_reader, register_and_gate
from digitops.tracking import configure, log_candidate_model

pytestmark = pytest.mark.slow  # a real registry and model store: logs, registers and downloads a model

REPOSITORY = Path(__file__).resolve().parents[2]
# A reference profile as the train stage makes one (of a few made-up digits: packaging only copies it).
_DIGITS = np.zeros((20, 28, 28), np.uint8)
_DIGITS[:, 6:22, 10:18] = np.arange(20, dtype=np.uint8)[:, None, None] * 12
PROFILE = reference_profile(_DIGITS, np.eye(10)[np.arange(20) % 10])

# Runs import_champion for each registered model named on the command line, in a process of its own: the
# BentoML store is the one under the BENTOML_HOME it starts with. Prints one JSON answer per name.
_PACKAGE_EACH = """
import json, sys
from digitops.package import PackagingError, import_champion
for name in sys.argv[1:]:
    try:
        tag, version = import_champion(name, name)
        print(json.dumps({"name": name, "tag": tag, "version": version}))
    except PackagingError as error:
        print(json.dumps({"name": name, "error": str(error)}))
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A registry holding two logged models (ONNX + Keras, as the train stage logs them), the second with
    a reference profile beside them as the train stage logs it now; yields its URI and the logged models'
    URIs, without and with the profile."""
    root = tmp_path_factory.mktemp("registry")
    scratch = tmp_path_factory.mktemp("model")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        uri = configure("package-tests", root)
        keras.utils.set_random_seed(0)
        model = build_model("seed004")  # untrained: packaging does not look at accuracy
        keras_file, onnx_file = scratch / "model.keras", scratch / "model.onnx"
        model.save(keras_file)
        export_onnx(model, onnx_file)
        profile_file = scratch / PROFILE_FILE
        profile_file.write_text(json.dumps(PROFILE))
        logged_uris = []
        for extra_files in ([], [profile_file]):
            with mlflow.start_run() as run:
                log_candidate_model(
                    onnx_file, keras_file, np.zeros((1, 28, 28), np.uint8), extra_files=extra_files
                )
            logged = mlflow.search_logged_models(
                experiment_ids=[run.info.experiment_id],
                filter_string=f"source_run_id = '{run.info.run_id}'",
                output_format="list",
            )
            logged_uris.append(logged[0].model_uri)
        yield uri, *logged_uris
    mlflow.set_tracking_uri(None)


def _register(logged_model_uri: str, name: str, statuses: list[str | None]) -> None:
    """Versions 1, 2, ... of `name`, one per status (None: no validation_status tag at all)."""
    for status in statuses:
        tags = {"metric.overall.accuracy": "0.5"} | ({"validation_status": status} if status else {})
        mlflow.register_model(logged_model_uri, name, tags=tags)


def _package(names: list[str], tracking_uri: str, bentoml_home: Path, script: str = _PACKAGE_EACH) -> dict:
    """Run `script` (which prints one JSON answer per name) in a process of its own; name -> its answer,
    with the process's stderr under "log"."""
    environment = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "BENTOML_HOME": str(bentoml_home),
        "BENTOML_DO_NOT_TRACK": "true",
    }
    result = subprocess.run(
        [sys.executable, "-c", script, *names],
        cwd=REPOSITORY,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    answers = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return {answer["name"]: answer | {"log": result.stderr} for answer in answers}


def _stored_models(bentoml_home: Path) -> dict[str, list[str]]:
    """The BentoML store's models: name -> versions (folders under BENTOML_HOME/models)."""
    models = bentoml_home / "models"
    if not models.is_dir():
        return {}
    return {
        folder.name: sorted(version.name for version in folder.iterdir() if version.is_dir())
        for folder in sorted(models.iterdir())
        if folder.is_dir()
    }


def test_only_a_validated_champion_is_packaged_and_a_hand_moved_alias_is_refused(store, tmp_path):
    tracking_uri, logged_model_uri, _ = store
    client = MlflowClient()
    # Version 1 passed; version 2 failed infra validation and had no alias until someone moved @champion
    # onto it by hand; version 3 was still pending (promote stopped before validating it).
    _register(logged_model_uri, "moved-to-failed", ["passed", "failed"])
    client.set_registered_model_alias("moved-to-failed", "champion", "2")
    _register(logged_model_uri, "moved-to-pending", ["passed", "passed", "pending"])
    client.set_registered_model_alias("moved-to-pending", "champion", "3")
    _register(logged_model_uri, "never-validated", [None])
    client.set_registered_model_alias("never-validated", "champion", "1")
    _register(logged_model_uri, "validated", ["passed", "failed", "passed"])
    client.set_registered_model_alias("validated", "champion", "1")  # a rollback to a validated version

    bentoml_home = tmp_path / "bentoml"
    answers = _package(
        ["moved-to-failed", "moved-to-pending", "never-validated", "validated"], tracking_uri, bentoml_home
    )

    for refused in ("moved-to-failed", "moved-to-pending", "never-validated"):
        assert "error" in answers[refused], f"{refused} was packaged: {answers[refused]}"
    assert answers["moved-to-failed"]["error"].startswith(
        "moved-to-failed version 2 (@champion) has validation_status 'failed', not 'passed'"
    )
    assert "version 3 (@champion) has validation_status 'pending'" in answers["moved-to-pending"]["error"]
    assert "version 1 (@champion) has validation_status None" in answers["never-validated"]["error"]
    assert answers["validated"]["version"] == "1"
    # Nothing of a refused version reached the store; the validated one did, labelled with its version.
    stored = _stored_models(bentoml_home)
    assert list(stored) == ["validated"] and len(stored["validated"]) == 1
    model_folder = bentoml_home / "models" / "validated" / stored["validated"][0]
    assert answers["validated"]["tag"] == f"validated:{stored['validated'][0]}"
    labels = yaml.safe_load((model_folder / "model.yaml").read_text())["labels"]
    assert labels["registered_model"] == "validated" and labels["mlflow_version"] == "1"
    assert (model_folder / "model.onnx").is_file()
    assert not (model_folder / PROFILE_FILE).exists()  # a version logged before the reference profile
    # A version registered without a model card (before promote wrote them) still ships, without one.
    assert not (model_folder / "model_card.md").exists()


def test_the_reference_profile_ships_with_the_model_when_the_version_has_one(store, tmp_path):
    tracking_uri, _, profiled_model_uri = store
    _register(profiled_model_uri, "profiled", ["passed"])
    MlflowClient().set_registered_model_alias("profiled", "champion", "1")

    bentoml_home = tmp_path / "bentoml"
    answers = _package(["profiled"], tracking_uri, bentoml_home)

    assert answers["profiled"]["version"] == "1"
    model_folder = bentoml_home / "models" / "profiled" / _stored_models(bentoml_home)["profiled"][0]
    assert (model_folder / "model.onnx").is_file()
    assert json.loads((model_folder / PROFILE_FILE).read_text()) == PROFILE


# Packages each registered model named on the command line as the package stage does (champion, then the
# challenger paired with it), in a process of its own (BENTOML_HOME), and asks the service's lookup which
# challenger goes with the champion. Prints one JSON answer per name.
_PACKAGE_WITH_CHALLENGER = """
import json, sys
from digitops.package import import_challenger, import_champion
from digitops.serve.shadow import paired_challenger
for name in sys.argv[1:]:
    tag, version = import_champion(name, name)
    answer = {"name": name, "champion": tag, "challenger": import_challenger(name, tag)}
    print(json.dumps(answer | {"paired": paired_challenger(tag)}))
"""


def _package_with_challenger(names: list[str], tracking_uri: str, bentoml_home: Path) -> dict[str, dict]:
    return _package(names, tracking_uri, bentoml_home, _PACKAGE_WITH_CHALLENGER)


def test_a_validated_challenger_is_packaged_beside_the_champion_and_paired_with_it(store, tmp_path):
    tracking_uri, logged_model_uri, _ = store
    client = MlflowClient()
    # promote's outcomes: a candidate that passed validation but did not beat the champion is @challenger
    _register(logged_model_uri, "shadowed", ["passed", "passed"])
    client.set_registered_model_alias("shadowed", "champion", "1")
    client.set_registered_model_alias("shadowed", "challenger", "2")
    _register(logged_model_uri, "alone", ["passed"])
    client.set_registered_model_alias("alone", "champion", "1")
    _register(logged_model_uri, "failed-challenger", ["passed", "failed"])  # moved there by hand
    client.set_registered_model_alias("failed-challenger", "champion", "1")
    client.set_registered_model_alias("failed-challenger", "challenger", "2")
    _register(logged_model_uri, "one-version", ["passed"])
    client.set_registered_model_alias("one-version", "champion", "1")
    client.set_registered_model_alias("one-version", "challenger", "1")

    bentoml_home = tmp_path / "bentoml"
    answers = _package_with_challenger(
        ["shadowed", "alone", "failed-challenger", "one-version"], tracking_uri, bentoml_home
    )

    shadowed = answers["shadowed"]
    challenger_tag, challenger_version = shadowed["challenger"]
    assert challenger_version == "2" and challenger_tag.startswith("shadowed-challenger:")
    assert shadowed["paired"] == challenger_tag  # the service finds it from the champion's tag
    folder = bentoml_home / "models" / "shadowed-challenger" / challenger_tag.split(":")[1]
    labels = yaml.safe_load((folder / "model.yaml").read_text())["labels"]
    assert labels["registered_model"] == "shadowed" and labels["mlflow_version"] == "2"
    assert labels["champion"] == shadowed["champion"]
    assert (folder / "model.onnx").is_file()

    for alone in ("alone", "failed-challenger", "one-version"):
        assert answers[alone]["challenger"] is None and answers[alone]["paired"] is None, alone
    log = answers["alone"]["log"]
    assert "no challenger packaged: alone has no @challenger" in log
    assert (
        "no challenger packaged: failed-challenger version 2 (@challenger) has validation_status 'failed', "
        "not 'passed'" in log
    )
    assert "no challenger packaged: @challenger and @champion are both version 1" in log
    assert sorted(_stored_models(bentoml_home)) == [
        "alone",
        "failed-challenger",
        "one-version",
        "shadowed",
        "shadowed-challenger",
    ]

    # The alias gone, the next package ships the champion alone: the old challenger stays in the store but
    # is paired with the champion it was packaged with, not with the new one.
    client.delete_registered_model_alias("shadowed", "challenger")
    again = _package_with_challenger(["shadowed"], tracking_uri, bentoml_home)["shadowed"]
    assert again["champion"] != shadowed["champion"]
    assert again["challenger"] is None and again["paired"] is None
    assert len(_stored_models(bentoml_home)["shadowed-challenger"]) == 1


def test_the_champions_model_card_ships_beside_its_model(store, tmp_path):
    """The card promote logged beside the version's model files lands beside model.onnx in the BentoML
    model, byte for byte."""
    tracking_uri, _, _ = store
    scratch = tmp_path / "model"
    scratch.mkdir()
    keras.utils.set_random_seed(1)
    model = build_model("seed004")
    keras_file, onnx_file = scratch / "model.keras", scratch / "model.onnx"
    model.save(keras_file)
    export_onnx(model, onnx_file)
    with mlflow.start_run() as run:
        log_candidate_model(onnx_file, keras_file, input_example=np.zeros((1, 28, 28), np.uint8))
    (logged,) = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run.info.run_id}'",
        output_format="list",
    )
    _register(logged.model_uri, "carded", ["passed"])
    client = MlflowClient()
    client.set_registered_model_alias("carded", "champion", "1")
    card = "# Model card: carded version 1\n\nAccuracy 12.34% \u2014 \u00e9t\u00e9\n"
    (scratch / "model_card.md").write_text(card, encoding="utf-8")
    client.log_model_artifact(logged.model_id, str(scratch / "model_card.md"))

    bentoml_home = tmp_path / "bentoml"
    answers = _package(["carded"], tracking_uri, bentoml_home)
    assert answers["carded"]["version"] == "1"
    (version,) = _stored_models(bentoml_home)["carded"]
    assert (bentoml_home / "models" / "carded" / version / "model_card.md").read_text(
        encoding="utf-8"
    ) == card


# Packages the champion with the string reader `readers@champion` beside it, as the package stage does.
_PACKAGE_WITH_READER = """
import json, sys
from digitops.package import import_champion
for name in sys.argv[1:]:
    tag, version = import_champion(name, name, "readers")
    print(json.dumps({"name": name, "tag": tag, "version": version}))
"""


def test_the_champion_reader_ships_beside_the_model(store, tmp_path):
    tracking_uri, logged_model_uri, _ = store
    _register(logged_model_uri, "read-along", ["passed"])
    MlflowClient().set_registered_model_alias("read-along", "champion", "1")
    reader_file = export_reader_onnx(build_reader(), tmp_path / "reader.onnx")  # untrained: only copied
    with mlflow.start_run():
        register_and_gate(log_reader(reader_file), "readers", 0.9, None, [], min_improvement=0.0, floor=0.5)

    bentoml_home = tmp_path / "bentoml"
    answers = _package(["read-along"], tracking_uri, bentoml_home, _PACKAGE_WITH_READER)

    model_folder = bentoml_home / "models" / "read-along" / _stored_models(bentoml_home)["read-along"][0]
    assert answers["read-along"]["version"] == "1"
    assert yaml.safe_load((model_folder / "model.yaml").read_text())["labels"]["reader_version"] == "1"
    assert optional_reader(model_folder) is not None  # the service's own lookup finds and loads it
