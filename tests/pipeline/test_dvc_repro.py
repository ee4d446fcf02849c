"""The real pipeline: `dvc repro` of every stage in a temporary copy of the repository, on the smoke profile
(tests/smoke.py), with a real MLflow store and a real BentoML home."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from PIL import Image

from digitops.infer.inputs import InputLimits, png_bytes
from digitops.serve.feedback import store_drawings
from tests.cards import number, share, tables
from tests.fakes import FOUR_STROKES, SEVEN_STROKES, canvas_rgba, draw_strokes
from tests.smoke import CAP
from tests.smoke import run as _run
from tests.smoke import set_param as _set_params

pytestmark = [pytest.mark.pipeline, pytest.mark.slow]

STAGES = ["ingest", "validate", "split", "augment", "train", "evaluate", "promote", "reader", "package"]
MIX_FILES = [
    "mnist/train-images-idx3-ubyte.gz",
    "mnist/train-labels-idx1-ubyte.gz",
    "mnist/t10k-images-idx3-ubyte.gz",
    "mnist/t10k-labels-idx1-ubyte.gz",
    "usps/zip.train.gz",
    "usps/zip.test.gz",
]


def _mlflow(repo: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _champion(repo: Path):
    return _mlflow(repo).get_model_version_by_alias("digits", "champion")


@pytest.fixture
def repo(smoke_repo) -> Path:
    return smoke_repo.path


@pytest.fixture
def env(smoke_repo) -> dict[str, str]:
    return smoke_repo.env


def test_repro_builds_the_split_from_the_mirror(repo):
    manifest = pd.read_parquet(repo / "data/prepared/manifest.parquet")
    counts = manifest.groupby(["source", "split"], observed=True).size().unstack()
    assert counts.loc["mnist", "test"] == counts.loc["usps", "test"] == CAP
    assert counts.loc["mnist", ["train", "val"]].sum() == counts.loc["usps", ["train", "val"]].sum() == CAP
    assert 45 <= counts.loc["mnist", "val"] <= 55  # val_fraction 0.1 of the training data
    assert {p.name for p in (repo / "data/prepared").iterdir()} == {
        "train.npz",
        "val.npz",
        "test.npz",
        "manifest.parquet",
    }
    table = pd.read_csv(repo / "reports/split_counts.csv")
    assert table["count"].sum() == len(manifest)
    assert yaml.safe_load((repo / "reports/data_validation.json").read_text())["passed"] is True


def test_second_repro_does_nothing_and_status_is_clean(repo, env):
    again = _run(["dvc", "repro"], repo, env)
    assert "Running stage" not in again.stdout
    assert again.stdout.count("didn't change, skipping") == len(STAGES)
    status = _run(["dvc", "status"], repo, env)
    assert "Data and pipelines are up to date." in status.stdout


def test_train_and_evaluate_fill_one_mlflow_run(repo):
    run_id = json.loads((repo / "models/run.json").read_text())["run_id"]
    client = _mlflow(repo)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["train.model"] == "small_cnn"
    assert run.data.params["ingest.max_per_split"] == str(CAP)
    assert len(client.get_metric_history(run_id, "epoch.val_accuracy")) == 3
    evaluation = json.loads((repo / "metrics/eval.json").read_text())
    params = yaml.safe_load((repo / "params.yaml").read_text())
    mix, lab = params["ingest"]["sources"], params["evaluate"]["lab_sources"]
    assert set(evaluation) == {*mix, "overall", "real_world", "contributed", "robustness", "calibration"}
    assert evaluation["contributed"] is None  # no drawings in the smoke mix
    for source in mix:  # every source's test split is capped, and each digit is counted once
        assert evaluation[source]["count"] == CAP
        assert sum(entry["count"] for entry in evaluation[source]["digits"].values()) == CAP
        assert len(evaluation[source]["confusions"]) <= 5
    assert evaluation["overall"]["count"] == len(mix) * CAP
    real_world = [source for source in mix if source not in lab]
    if real_world:
        assert sorted(evaluation["real_world"]["sources"]) == sorted(real_world)
        assert evaluation["real_world"]["count"] == len(real_world) * CAP
    else:
        assert evaluation["real_world"] is None
    assert run.data.metrics["test.overall.accuracy"] == pytest.approx(evaluation["overall"]["accuracy"])
    assert run.data.metrics["test.usps.digits.1.accuracy"] == pytest.approx(
        evaluation["usps"]["digits"]["1"]["accuracy"]
    )
    assert evaluation["overall"]["accuracy"] > 0.7  # 3 epochs on a few thousand digits: far above chance
    assert "robustness.rotate_30" in run.data.metrics and "robustness.inverted" in run.data.metrics
    assert len(run.data.tags["data.train.npz.sha256"]) == 64
    artifacts = {item.path for item in client.list_artifacts(run_id, "eval")}
    assert artifacts == {
        "eval/confusion.csv",
        "eval/confusion.png",
        "eval/misclassified.png",
        "eval/reliability.csv",
        "eval/reliability.png",
    }
    assert [item.path for item in client.list_artifacts(run_id, "metrics")] == ["metrics/eval.json"]
    assert (repo / "mlartifacts").is_dir()
    models = client.search_logged_models(experiment_ids=[run.info.experiment_id])
    assert [model.source_run_id for model in models if model.name == "model"] == [run_id]  # "reader": its own


def test_train_calibrates_the_model_and_evaluate_reports_the_error_before_and_after(repo):
    training = json.loads((repo / "metrics/train.json").read_text())
    assert set(training) == {
        "best_val_accuracy",
        "epochs",
        "parameters",
        "train_seconds",
        "train_images_per_second",
        "digits_per_epoch",
        "calibration",
    }
    calibration = training["calibration"]
    assert set(calibration) == {
        "temperature",
        "val_ece_before",
        "val_ece_after",
        "val_nll_before",
        "val_nll_after",
    }
    assert 0.05 <= calibration["temperature"] <= 20
    assert calibration["val_nll_after"] <= calibration["val_nll_before"]  # what the fit minimises
    run = _mlflow(repo).get_run(json.loads((repo / "models/run.json").read_text())["run_id"])
    assert float(run.data.params["calibration.temperature"]) == pytest.approx(calibration["temperature"])
    assert run.data.metrics["calibration.val_ece_after"] == pytest.approx(calibration["val_ece_after"])

    evaluation = json.loads((repo / "metrics/eval.json").read_text())
    report = evaluation["calibration"]
    assert report["temperature"] == calibration["temperature"]  # the one the model applies
    sources = yaml.safe_load((repo / "params.yaml").read_text())["ingest"]["sources"]
    assert set(report) == {"temperature", *sources, "overall"}
    for name in [*sources, "overall"]:  # "after" is the served model's own error
        assert report[name]["ece_after"] == pytest.approx(evaluation[name]["ece"])
        assert 0 <= report[name]["ece_before"] <= 1
    logged = run.data.metrics["calibration.overall.ece_before"]
    assert logged == pytest.approx(report["overall"]["ece_before"])
    table = pd.read_csv(repo / "plots/eval/reliability.csv")
    assert list(table)[:4] == ["confidence", "ideal", "accuracy_before", "accuracy_after"] and len(table)
    assert (repo / "plots/eval/reliability.png").stat().st_size > 0


def test_promote_makes_the_first_model_champion_after_infra_validation(repo):
    run_id = json.loads((repo / "models/run.json").read_text())["run_id"]
    report = json.loads((repo / "reports/promotion.json").read_text())
    assert report["promoted"] is True and report["alias"] == "champion"
    assert report["champion_before"] is None
    assert "no champion yet: the floors decide" in report["reasons"]
    evaluation = json.loads((repo / "metrics/eval.json").read_text())
    # Parity: the registered ONNX model gives the Keras model's digit on the whole test split.
    validation = report["infra_validation"]
    assert validation["passed"] is True and validation["runtime"].startswith("onnxruntime ")
    assert validation["digits"] == evaluation["overall"]["count"] and validation["mismatched_digits"] == 0
    assert validation["known_answer_digits"] == 256 and validation["max_probability_difference"] <= 1e-4
    assert (repo / "models/candidate.onnx").stat().st_size > 0
    champion = _champion(repo)
    assert champion.run_id == run_id and str(champion.version) == report["champion"]
    assert champion.tags["validation_status"] == "passed" and champion.tags["parity.mismatched_digits"] == "0"
    assert float(champion.tags["metric.overall.accuracy"]) == pytest.approx(evaluation["overall"]["accuracy"])


def test_the_model_card_gives_the_runs_figures_and_ships_with_the_version(repo, env):
    """reports/model_card.md: each figure read back equals metrics/eval.json's and the version's registry
    tag; the same card is logged beside the version's model files and packaged beside model.onnx."""
    card = (repo / "reports/model_card.md").read_text()
    evaluation = json.loads((repo / "metrics/eval.json").read_text())
    report = json.loads((repo / "reports/promotion.json").read_text())
    champion = _champion(repo)
    assert card.startswith(f"# Model card: digits version {champion.version}\n")
    rows = tables(card)["Evaluation on the test split"]
    sources = [name for name in report["candidate"]["metrics"] if name != "overall"]
    assert [row["source"] for row in rows] == [*sources, "overall"]
    for row in rows:
        figures, name = evaluation[row["source"]], row["source"]
        assert number(row["test digits"]) == figures["count"] == float(champion.tags[f"metric.{name}.count"])
        for column, key in (("accuracy", "accuracy"), ("macro-F1", "macro_f1"), ("ECE", "ece")):
            assert share(row[column], figures[key]) and share(
                row[column], float(champion.tags[f"metric.{name}.{key}"])
            )
        assert share(row["ECE before calibration"], evaluation["calibration"][name]["ece_before"])
    for row in tables(card)["Accuracy per digit"]:
        for name in ("overall", *sources):
            assert share(row[name], evaluation[name]["digits"][row["digit"]]["accuracy"])
    temperature = json.loads((repo / "metrics/train.json").read_text())["calibration"]["temperature"]
    assert f"temperature {temperature:.4f} applied in the model" in card
    assert f"`{champion.tags['model_sha256']}`" in card
    assert all(f"- {reason}\n" in card for reason in report["reasons"])
    assert "## Serving benchmark\n\nNot measured for this build." in card  # the copy has no docs/
    # Logged with the version (beside its model files, where models:/digits/<version> brings it along)...
    logged = _mlflow(repo).get_logged_model(champion.source.removeprefix("models:/"))
    assert (Path(logged.artifact_location.removeprefix("file://")) / "model_card.md").read_text() == card
    # ...and packaged beside model.onnx.
    model_tag = json.loads((repo / "reports/package.json").read_text())["bento_model"]
    packaged = Path(env["BENTOML_HOME"]) / "models" / model_tag.replace(":", "/") / "model_card.md"
    assert packaged.read_text() == card


def test_package_puts_the_champion_in_the_bentoml_store_and_builds_a_bento(smoke_repo):
    report = json.loads((smoke_repo.path / "reports/package.json").read_text())
    model = json.loads(
        _run(
            ["bentoml", "models", "get", report["bento_model"], "-o", "json"], smoke_repo.path, smoke_repo.env
        ).stdout
    )
    assert model["labels"]["mlflow_version"] == report["champion"] == str(_champion(smoke_repo.path).version)
    assert model["labels"]["registered_model"] == "digits"
    bento = json.loads(
        _run(["bentoml", "get", report["bento"], "-o", "json"], smoke_repo.path, smoke_repo.env).stdout
    )
    assert [entry["tag"] for service in bento["services"] for entry in service["models"]] == [
        report["bento_model"]
    ]
    assert Path(smoke_repo.env["BENTOML_HOME"]).is_dir()


def test_the_reader_stage_registers_its_reader_and_never_serves_one_below_the_floor(smoke_repo):
    """The smoke profile's reader (600 lines, one epoch) reads too few test lines: registered, but not
    @champion, and the bento ships without a reader (/read classifies the digits it finds)."""
    repo, env = smoke_repo.path, smoke_repo.env
    report = json.loads((repo / "metrics/reader.json").read_text())
    assert report["candidate"]["lines"] == 100
    assert 0.0 <= report["candidate"]["line_accuracy"] <= report["candidate"]["digit_line_accuracy"] <= 1.0
    assert set(report["candidate"]["sources"]) == {"mnist", "usps", "bhmsds", "optdigits-orig"}
    assert report["champion"] is None
    assert report["decision"]["promoted"] is False and "below the floor" in report["decision"]["reason"]
    client = _mlflow(repo)
    (version,) = client.search_model_versions("name = 'digits-reader'")
    assert str(version.version) == report["decision"]["version"] and not version.aliases
    run = client.get_run(version.run_id)
    assert run.data.tags["digitops.kind"] == "reader" and run.data.params["reader.lines"] == "600"
    assert "test.line_accuracy" in run.data.metrics
    package = json.loads((repo / "reports/package.json").read_text())
    model = json.loads(
        _run(["bentoml", "models", "get", package["bento_model"], "-o", "json"], repo, env).stdout
    )
    assert "reader_version" not in model["labels"]
    assert (repo / "models/reader.onnx").is_file()


def test_a_forced_rerun_reproduces_every_data_output_byte_for_byte(repo, env):
    before = {folder: _digests(repo / folder) for folder in ("data/interim", "data/prepared", "reports")}
    _run(["dvc", "repro", "--force", "split"], repo, env)  # ingest, validate and split again
    after = {folder: _digests(repo / folder) for folder in ("data/interim", "data/prepared", "reports")}
    assert after == before
    assert "Data and pipelines are up to date." in _run(["dvc", "status"], repo, env).stdout


@pytest.mark.parametrize("damaged", MIX_FILES)
def test_a_flipped_byte_in_the_mirror_stops_ingest_and_keeps_the_outputs(repo, env, tmp_path, damaged):
    mirror = tmp_path / "mirror"
    shutil.copytree(env["DIGITOPS_DATA_MIRROR"], mirror)
    target = mirror / damaged
    target.chmod(0o644)
    data = bytearray(target.read_bytes())
    data[len(data) // 3] ^= 0x01
    target.write_bytes(bytes(data))
    before = _digests(repo / "data/interim")

    result = _run(
        [sys.executable, "-m", "pipeline.ingest"],
        repo,
        {**env, "DIGITOPS_DATA_MIRROR": str(mirror)},
        check=False,
    )

    assert result.returncode == 1
    assert f"error: {target}: has sha256" in result.stderr
    assert "Traceback" not in result.stderr
    assert _digests(repo / "data/interim") == before
    assert [p.name for p in (repo / "data").iterdir() if p.name.startswith(".")] == []  # no temporaries


def test_a_contract_violation_fails_repro_and_keeps_the_previous_outputs(repo, env):
    report = (repo / "reports/data_validation.json").read_bytes()
    prepared = _digests(repo / "data/prepared")
    _set_params(repo, "validate", "max_class_fraction", 0.105)  # MNIST's 1s are 11.35% of its test set
    try:
        result = _run(["dvc", "repro"], repo, env, check=False)
        assert result.returncode != 0
        assert "the data violates the contract" in result.stderr
        assert "mnist test: class shares outside [0.05, 0.105]" in result.stderr
        assert (repo / "reports/data_validation.json").read_bytes() == report
        assert _digests(repo / "data/prepared") == prepared
    finally:
        _set_params(repo, "validate", "max_class_fraction", 0.2)
    _run(["dvc", "repro"], repo, env)
    assert "Data and pipelines are up to date." in _run(["dvc", "status"], repo, env).stdout


def test_a_contributed_drawing_reruns_ingest_and_joins_the_data_once_drawings_are_listed(repo, env, tmp_path):
    """In a copy of the smoke project: a drawing stored as the service stores it reruns ingest alone while
    `drawings` is not in the mix (the same digits come out); listed, it is in the next split as `drawings`."""
    copy = tmp_path / "repo"  # the MLflow store stays behind: split does not need it
    shutil.copytree(repo, copy, symlinks=True, ignore=shutil.ignore_patterns("mlartifacts", "mlflow.db"))
    env = {**env, "PYTHONPATH": str(copy / "src")}
    drawings = [(png_bytes(Image.fromarray(canvas_rgba(draw_strokes(SEVEN_STROKES)))), 7)]
    drawings.append((png_bytes(Image.fromarray(canvas_rgba(draw_strokes(FOUR_STROKES), (40, 90, 200)))), 4))
    store_drawings(drawings, copy / "data/feedback", InputLimits(4, 1_000_000, 1_000_000))

    unused = _run(["dvc", "repro", "split"], copy, env)  # every later stage depends on split's outputs
    assert "Running stage 'ingest'" in unused.stdout
    assert unused.stdout.count("Running stage") == 1  # the same interim files: validate and split skip

    _set_params(copy, "ingest", "sources", ["mnist", "usps", "drawings"])
    _run(["dvc", "repro", "split"], copy, env)
    manifest = pd.read_parquet(copy / "data/prepared/manifest.parquet")
    drawn = manifest[manifest["source"] == "drawings"]
    assert sorted(drawn["label"]) == [4, 7]
    assert set(drawn["official_split"]) <= {"train", "test"}
    assert (manifest["source"] == "mnist").sum() == 2 * CAP
    report = json.loads((copy / "reports/data_validation.json").read_text())
    assert report["set_aside"] == {"drawings": []}  # both drawings meet the contract


def test_dvc_experiments_become_comparable_mlflow_runs(repo, env):
    """`dvc exp run -S ...` twice: two more MLflow runs in the same experiment, their params side by side."""
    _run(["git", "add", "-A"], repo, env)
    _run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-qm", "smoke"],
        repo,
        env,
    )
    before = {run.info.run_id for run in _mlflow(repo).search_runs(experiment_ids=["1"])}
    for model in ("tutorial_cnn", "small_cnn"):
        _run(["dvc", "exp", "run", "-S", f"train.model={model}", "-S", "train.epochs=1"], repo, env)
    runs = [run for run in _mlflow(repo).search_runs(experiment_ids=["1"]) if run.info.run_id not in before]
    assert sorted(run.data.params["train.model"] for run in runs) == ["small_cnn", "tutorial_cnn"]
    assert all(run.data.params["train.epochs"] == "1" for run in runs)
    assert all(run.data.tags.get("dvc.experiment") for run in runs)
    assert all("test.overall.accuracy" in run.data.metrics for run in runs)
    # One epoch is worse than three: each experiment's model was registered, but only as challenger.
    assert str(_champion(repo).version) == json.loads((repo / "reports/package.json").read_text())["champion"]
    challengers = [
        version
        for version in _mlflow(repo).search_model_versions("name = 'digits'")
        if version.run_id in {run.info.run_id for run in runs}
    ]
    assert len(challengers) == 2 and all(version.tags["decision"] == "challenger" for version in challengers)
