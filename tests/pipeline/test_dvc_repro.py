"""The real pipeline: `dvc repro` in a temporary copy of the repository, on a small cap of the real data."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.fakes import REPO_ROOT

pytestmark = [pytest.mark.pipeline, pytest.mark.slow]

CAP = 200
PROJECT_FILES = ["dvc.yaml", "params.yaml", ".dvcignore", ".gitignore", ".dvc/config", ".dvc/.gitignore"]
PROJECT_DIRS = ["pipeline", "src"]
MIX_FILES = [
    "mnist/train-images-idx3-ubyte.gz",
    "mnist/train-labels-idx1-ubyte.gz",
    "mnist/t10k-images-idx3-ubyte.gz",
    "mnist/t10k-labels-idx1-ubyte.gz",
    "usps/zip.train.gz",
    "usps/zip.test.gz",
]


def _run(args, cwd, env, check=True):
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def _set_params(repo: Path, section: str, key: str, value) -> None:
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params[section][key] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def env(mirror):
    bin_dir = str(Path(sys.executable).parent)  # the virtualenv's python and dvc
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "DIGITOPS_DATA_MIRROR": str(mirror),
    }


@pytest.fixture(scope="module")
def repo(tmp_path_factory, env):
    """A copy of the project with a small cap, after one successful `dvc repro`."""
    repo = tmp_path_factory.mktemp("repo")
    for name in PROJECT_FILES:
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, repo / name)
    for name in PROJECT_DIRS:
        shutil.copytree(
            REPO_ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
        )
    _run(["git", "init", "-q"], repo, env)
    _set_params(repo, "ingest", "max_per_split", CAP)
    env["PYTHONPATH"] = str(repo / "src")  # the copy's library, not the checkout's
    _run(["dvc", "repro"], repo, env)
    return repo


def test_repro_builds_the_split_from_the_mirror(repo):
    manifest = pd.read_parquet(repo / "data/prepared/manifest.parquet")
    counts = manifest.groupby(["source", "split"], observed=True).size().unstack()
    assert counts.loc["mnist", "test"] == counts.loc["usps", "test"] == CAP
    assert counts.loc["mnist", ["train", "val"]].sum() == counts.loc["usps", ["train", "val"]].sum() == CAP
    assert 15 <= counts.loc["mnist", "val"] <= 25  # val_fraction 0.1 of the training data
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
    assert again.stdout.count("didn't change, skipping") == 3
    status = _run(["dvc", "status"], repo, env)
    assert "Data and pipelines are up to date." in status.stdout


def test_a_forced_rerun_reproduces_every_output_byte_for_byte(repo, env):
    before = {folder: _digests(repo / folder) for folder in ("data/interim", "data/prepared", "reports")}
    _run(["dvc", "repro", "--force"], repo, env)
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
    assert sorted(p.name for p in (repo / "data").iterdir()) == ["interim", "prepared"]  # no temporaries


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
