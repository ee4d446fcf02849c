"""Tracking against a real `mlflow server` on 127.0.0.1: the path a team takes when one machine's
sqlite file is not enough. The server's backend store is sqlite, and Postgres where PostgreSQL's server
binaries are installed (a cluster started for the test, on 127.0.0.1), as docs/scaling.md recommends."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from digitops.tracking import configure
from tests.fakes import free_port

pytestmark = pytest.mark.slow


def _as_postgres_user(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run its tools as the `postgres` user."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL cluster on 127.0.0.1 with a database `mlflow`; yields its URI."""
    if shutil.which("initdb") is None or shutil.which("pg_ctl") is None:
        pytest.skip("PostgreSQL's server binaries (initdb, pg_ctl) are not installed")
    folder = Path(tempfile.mkdtemp(prefix="digitops-pg-"))  # outside pytest's root-only tmp folders
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    data, port = folder / "data", free_port()
    quiet = {"check": True, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    subprocess.run(_as_postgres_user(["initdb", "-D", str(data), "-U", "mlflow", "-A", "trust"]), **quiet)
    # The server's output goes to a log file: a pipe it inherited would keep pg_ctl's caller waiting.
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
    start = ["pg_ctl", "-D", str(data), "-o", options, "-l", str(folder / "server.log"), "-w", "start"]
    subprocess.run(_as_postgres_user(start), **quiet)
    try:
        create = ["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "mlflow", "-d", "postgres"]
        subprocess.run([*create, "-c", "CREATE DATABASE mlflow"], **quiet)
        yield f"postgresql://mlflow@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run(
            _as_postgres_user(["pg_ctl", "-D", str(data), "-m", "fast", "stop"]), **{**quiet, "check": False}
        )
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("server")
    if request.param == "postgresql":
        backend = request.getfixturevalue("postgres")
    else:
        backend = f"sqlite:///{root / 'server.db'}"
    port = free_port()
    mlflow_cli = Path(sys.executable).parent / "mlflow"
    process = subprocess.Popen(
        [
            str(mlflow_cli), "server",
            "--backend-store-uri", backend,
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
        mlflow.log_params({"train.model": "small_cnn", "train.epochs": 2})
        mlflow.log_metric("test.overall.accuracy", 0.97)
        mlflow.log_text("confusion", "eval/confusion.csv")
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlartifacts").exists()
    fetched = MlflowClient(tracking_uri=url).get_run(run.info.run_id)
    assert fetched.data.params == {"train.model": "small_cnn", "train.epochs": "2"}
    assert fetched.data.metrics["test.overall.accuracy"] == 0.97
    stored = list((server_root / "artifacts").rglob("confusion.csv"))
    assert len(stored) == 1 and stored[0].read_text() == "confusion"  # proxied to the server's store
