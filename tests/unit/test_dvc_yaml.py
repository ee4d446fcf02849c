"""dvc.yaml must name every library module a stage runs, or a code change would not rerun the stage."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from tests.fakes import REPO_ROOT

SRC = REPO_ROOT / "src"
# Modules that cannot change a stage's outputs (not followed further): typed params (their values are
# DVC params) and the error types.
NOT_OUTPUT_SHAPING = {"digitops/config.py", "digitops/errors.py"}
# Followed (a package's __init__ may import modules, as models/ does to register them) but not required
# as a dependency: the top package holds only its version.
NOT_REQUIRED = {"digitops/__init__.py"}
STAGES = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]


def _module_file(module: str) -> Path | None:
    base = SRC.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _digitops_imports(path: Path) -> set[Path]:
    """Files of the digitops modules that `path` imports, directly or through other digitops modules."""
    seen: set[Path] = set()
    pending = [path]
    while pending:
        tree = ast.parse(pending.pop().read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            for name in names:
                found = _module_file(name) if name.startswith("digitops") else None
                if found and found.relative_to(SRC).as_posix() in NOT_OUTPUT_SHAPING:
                    continue
                if found and found not in seen:
                    seen.add(found)
                    pending.append(found)
    return seen


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_cover_the_modules_it_imports(stage):
    definition = STAGES[stage]
    script = REPO_ROOT / "pipeline" / f"{definition['cmd'].split()[-1].split('.')[-1]}.py"
    deps = [REPO_ROOT / dep for dep in definition["deps"] if "${" not in dep]
    assert script in deps
    repeated = sorted({dep for dep in definition["deps"] if definition["deps"].count(dep) > 1})
    assert not repeated, f"{stage}: listed more than once: {repeated}"  # merges tend to add a second copy
    for module in _digitops_imports(script):
        relative = module.relative_to(SRC).as_posix()
        if relative in NOT_REQUIRED:
            continue
        assert any(module == dep or dep in module.parents for dep in deps), f"{stage}: {relative} not in deps"
