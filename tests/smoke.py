"""The smoke profile, run once per test session: a temporary copy of the project after a real `dvc repro`
of all stages (a small cap of the real data, a small model, three epochs), with its own MLflow store and
its own BentoML home. The pipeline tests and the service tests share it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.fakes import REPO_ROOT

CAP = 500
SMOKE = [  # the smoke profile, as docs/pipeline.md's `dvc exp run -S` overrides set it
    ("ingest", "max_per_split", CAP),
    ("train", "model", "small_cnn"),
    ("train", "epochs", 3),
    ("train", "batch_size", 64),
    ("train", "learning_rate", 0.005),
    ("promote", "floors", {"overall": 0.8, "mnist": 0.8, "usps": 0.8, "bhmsds": 0.5, "optdigits-orig": 0.5}),
    ("reader", "lines", 600),
    ("reader", "val_lines", 50),
    ("reader", "test_lines", 100),
    ("reader", "epochs", 1),
    ("reader", "batch_size", 32),
]
PROJECT_FILES = [
    "dvc.yaml",
    "params.yaml",
    ".dvcignore",
    ".gitignore",
    ".dvc/config",
    ".dvc/.gitignore",
    "bentofile.yaml",
    "requirements-serve.lock",
    "data/feedback/README.md",  # the contributed drawings' folder, an ingest dependency (kept in git)
]
PROJECT_DIRS = ["pipeline", "src"]


@dataclass(frozen=True)
class SmokeRepo:
    path: Path
    env: dict[str, str]  # what every command in the copy runs with (PATH, mirror, BENTOML_HOME, ...)
    bento: str  # the bento tag the first `dvc repro` built
    bento_model: str  # the BentoML model in it (the first champion)
    evaluation: dict  # metrics/eval.json of that first run (later tests may run experiments)
    keras_model: Path  # that run's models/candidate.keras (the champion the bento serves, as trained)


def run(args, cwd: Path, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, args))} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


def set_param(repo: Path, section: str, key: str, value) -> None:
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params[section][key] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def make_smoke_repo(root: Path, mirror: Path) -> SmokeRepo:
    repo = root / "repo"
    for name in PROJECT_FILES:
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, repo / name)
    for name in PROJECT_DIRS:
        shutil.copytree(
            REPO_ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
        )
    bin_dir = str(Path(sys.executable).parent)  # the virtualenv's python, dvc and bentoml
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "DIGITOPS_DATA_MIRROR": str(mirror),
        "PYTHONPATH": str(repo / "src"),  # the copy's library, not the checkout's
        "BENTOML_HOME": str(root / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
    }
    env.pop("MLFLOW_TRACKING_URI", None)  # the embedded store inside the copy
    run(["git", "init", "-q"], repo, env)
    for section, key, value in SMOKE:
        set_param(repo, section, key, value)
    run(["dvc", "repro"], repo, env)
    package = json.loads((repo / "reports/package.json").read_text())
    shutil.copy2(repo / "models/candidate.keras", root / "champion.keras")
    return SmokeRepo(
        path=repo,
        env=env,
        bento=package["bento"],
        bento_model=package["bento_model"],
        evaluation=json.loads((repo / "metrics/eval.json").read_text()),
        keras_model=root / "champion.keras",
    )
