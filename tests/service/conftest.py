"""The service under test, shared by the files of tests/service: one real `bentoml serve` of the smoke bento
for the session, and the model it serves loaded in this process."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from digitops.infer.classifier import load_classifier
from digitops.infer.inputs import png_bytes
from digitops.io import load_npz
from digitops.preprocess import normalize_digits
from tests.conftest import _Server
from tests.fakes import free_port


@dataclass(frozen=True)
class Service:
    url: str
    log: Path
    pid: int  # the `bentoml serve` process; its workers are its children
    feedback_dir: Path  # the feedback folder (DIGITOPS_FEEDBACK_DIR)
    egress: _Server  # the service's HTTP proxy: every request the service sends out arrives here

    @property
    def quarantine(self) -> Path:
        """Where POST /feedback stores drawings until they are reviewed."""
        return self.feedback_dir / "incoming"


@dataclass(frozen=True)
class SmokeDigits:
    images: np.ndarray  # (N, 28, 28) uint8, the smoke run's test split
    labels: np.ndarray
    pngs: list[bytes]
    expected: np.ndarray  # (N, 10): the served model's probabilities, computed in this process


@pytest.fixture(scope="session")
def service(smoke_repo, tmp_path_factory):
    """`bentoml serve <bento>` in its own process group, ready when /readyz answers 200.

    Its HTTP proxy is a local server that counts what it receives (`Service.egress`): BentoML's own guard
    against fetching private addresses lets proxied requests through, so any URL the service fetches, to
    whatever host, shows up there.
    """
    with serve_bento(smoke_repo.bento, smoke_repo.env, tmp_path_factory, {}) as running:
        yield running


@contextlib.contextmanager
def serve_bento(
    bento: str, env: Mapping[str, str], tmp_path_factory, extra_env: Mapping[str, str]
) -> Iterator[Service]:
    """Run `bentoml serve <bento>` with `extra_env` until the block ends (see the `service` fixture).

    Each service gets a BentoML home of its own (the store's entries linked, unless `extra_env` names a
    home): `bentoml serve` empties its home's Prometheus folder as it starts, which would wipe the
    metrics of a service already running on a shared home.
    """
    workdir = tmp_path_factory.mktemp("serve")
    if "BENTOML_HOME" not in extra_env:
        home = workdir / "bentoml"
        home.mkdir()
        for entry in Path(env["BENTOML_HOME"]).iterdir():
            if entry.name != "prometheus_multiproc_dir":
                (home / entry.name).symlink_to(entry.resolve())
        extra_env = {**extra_env, "BENTOML_HOME": str(home)}
    egress = _Server(tmp_path_factory.mktemp("egress"))
    feedback_dir = workdir / "feedback"
    port = free_port()
    log = workdir / "serve.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            ["bentoml", "serve", bento, "--host", "127.0.0.1", "--port", str(port)],
            cwd=workdir,
            env={
                **env,
                "DIGITOPS_FEEDBACK_DIR": str(feedback_dir),
                **{name: egress.url for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")},
                "NO_PROXY": "",
                "no_proxy": "",
                **extra_env,
            },
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"bentoml serve exited with {process.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"bentoml serve not ready after 180 s:\n{log.read_text()}")
            time.sleep(0.5)
        yield Service(url, log, process.pid, feedback_dir, egress)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        egress.close()


@pytest.fixture(scope="session")
def served_model(smoke_repo):
    """The model in the bento, loaded in this process from the BentoML store's files."""
    name, version = smoke_repo.bento_model.split(":")
    return load_classifier(Path(smoke_repo.env["BENTOML_HOME"]) / "models" / name / version)


@pytest.fixture(scope="session")
def digits(smoke_repo, served_model) -> SmokeDigits:
    test = load_npz(smoke_repo.path / "data/prepared/test.npz")
    # The service normalises every upload; MNIST and USPS test digits are (almost) fixed points of that.
    expected = served_model(normalize_digits(test["images"]))
    return SmokeDigits(
        test["images"], test["labels"], [png_bytes(image) for image in test["images"]], expected
    )
