"""What the bentos install (requirements-serve*.lock): ONNX Runtime, never the training stack."""

from __future__ import annotations

import pytest

from tests.fakes import REPO_ROOT, locked_packages

TRAINING_ONLY = {"tensorflow", "tensorflow-cpu", "keras", "h5py", "tf2onnx", "onnx", "mlflow", "dvc"}


@pytest.mark.parametrize(
    ("lock", "runtime"),
    [("requirements-serve.lock", "onnxruntime"), ("requirements-serve-gpu.lock", "onnxruntime-gpu")],
)
def test_the_bento_locks_pin_onnx_runtime_and_no_training_library(lock, runtime):
    packages = locked_packages((REPO_ROOT / lock).read_text())
    assert runtime in packages
    assert not packages.keys() & TRAINING_ONLY, f"{lock} pins {sorted(packages.keys() & TRAINING_ONLY)}"


def test_the_gpu_lock_brings_cuda_and_cudnn_from_pip():
    packages = locked_packages((REPO_ROOT / "requirements-serve-gpu.lock").read_text())
    assert any(name.startswith("nvidia-cudnn") for name in packages)
    assert "onnxruntime" not in packages  # the CPU package would shadow the GPU one


def test_the_versions_the_bentos_share_with_development_are_the_same():
    """A model validated with one onnxruntime and numpy is served with the same ones."""

    development, serving = (
        locked_packages((REPO_ROOT / lock).read_text())
        for lock in ("requirements.lock", "requirements-serve.lock")
    )
    shared = set(development) & set(serving)
    assert {"onnxruntime", "numpy", "bentoml", "pillow"} <= shared
    assert {name: serving[name] for name in shared} == {name: development[name] for name in shared}
