"""Tracking against a real `mlflow server` on 127.0.0.1: the path a team takes when one machine's
sqlite file is not enough."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from digitops.tracking import configure
from tests.fakes import free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("server")
    port = free_port()
    mlflow_cli = Path(sys.executable).parent / "mlflow"
    process = subprocess.Popen(
        [
            str(mlflow_cli), "server",
            "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
            "--artifacts-destination", str(root / "artifacts"),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"mlflow server did not start: {process.stderr.read().decode()[-2000:]}")
        time.sleep(0.5)
    yield url, root
    process.terminate()
    process.wait(timeout=30)
    mlflow.set_tracking_uri(None)


def test_runs_and_artifacts_go_to_the_server(server, tmp_path, monkeypatch):
    url, server_root = server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    assert configure("digitops", tmp_path) == url
    with mlflow.start_run() as run:
        mlflow.log_params({"train.model": "seed004", "train.epochs": 2})
        mlflow.log_metric("test.overall.accuracy", 0.97)
        mlflow.log_text("confusion", "eval/confusion.csv")
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlartifacts").exists()
    fetched = MlflowClient(tracking_uri=url).get_run(run.info.run_id)
    assert fetched.data.params == {"train.model": "seed004", "train.epochs": "2"}
    assert fetched.data.metrics["test.overall.accuracy"] == 0.97
    stored = list((server_root / "artifacts").rglob("confusion.csv"))
    assert len(stored) == 1 and stored[0].read_text() == "confusion"  # proxied to the server's store
