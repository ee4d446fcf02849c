"""The served smoke bento, shared by the service tests and the page's browser test."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.fakes import free_port


@dataclass(frozen=True)
class Service:
    url: str
    log: Path
    feedback_dir: Path  # DIGITOPS_FEEDBACK_DIR of the served process: where POST /feedback stores drawings


@pytest.fixture(scope="session")
def service(smoke_repo, tmp_path_factory):
    """`bentoml serve <bento>` in its own process group, ready when /readyz answers 200.

    One process for the session (the service tests and the browser test share it), storing contributed
    drawings in a folder of its own rather than in the smoke project's data/feedback.
    """
    workdir = tmp_path_factory.mktemp("serve")
    feedback_dir = workdir / "feedback"
    port = free_port()
    log = workdir / "serve.log"
    env = {**smoke_repo.env, "DIGITOPS_FEEDBACK_DIR": str(feedback_dir)}
    with log.open("w") as output:
        process = subprocess.Popen(
            ["bentoml", "serve", smoke_repo.bento, "--host", "127.0.0.1", "--port", str(port)],
            cwd=workdir,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        if process.poll() is not None:
            pytest.fail(f"bentoml serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"bentoml serve not ready after 180 s:\n{log.read_text()}")
        time.sleep(0.5)
    yield Service(url, log, feedback_dir)
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
