"""`make serve` listens on loopback unless HOST says otherwise (BentoML's own default is every interface)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]


def _serve_command(*variables: str) -> str:
    """The `bentoml serve` line that `make serve` would run (make -n: printed, not run)."""
    if shutil.which("make") is None:
        pytest.skip("no make on this machine")
    environment = {key: value for key, value in os.environ.items() if key not in ("HOST", "PORT")}
    result = subprocess.run(
        ["make", "-n", "serve", *variables],
        cwd=REPOSITORY,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    return next(line for line in result.stdout.splitlines() if line.startswith("bentoml serve"))


def test_make_serve_binds_loopback_by_default():
    assert re.search(r" --host 127\.0\.0\.1 --port 3000$", _serve_command())


def test_host_opens_it_deliberately():
    assert re.search(r" --host 0\.0\.0\.0 --port 8080$", _serve_command("HOST=0.0.0.0", "PORT=8080"))
