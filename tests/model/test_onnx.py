"""The served model: a Keras model exported to ONNX (digitops.export) and run by ONNX Runtime
(digitops.infer.classifier), which must answer as Keras does and refuse a file that is not a digit model."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import keras
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from digitops.export import export_onnx
from digitops.infer.classifier import (
    CPU,
    CUDA,
    TELEMETRY_OPT_OUT,
    ModelFileError,
    choose_providers,
    load_classifier,
)
from digitops.models import build_model
from tests.fakes import random_digits


@pytest.fixture(scope="module")
def keras_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    return build_model("small_cnn")


@pytest.fixture(scope="module")
def onnx_file(keras_model, tmp_path_factory):
    return export_onnx(keras_model, tmp_path_factory.mktemp("onnx") / "model.onnx")


def test_the_exported_model_answers_as_keras(keras_model, onnx_file):
    images = random_digits(300, seed=3)
    expected = keras.ops.convert_to_numpy(keras_model(images, training=False))
    served = load_classifier(onnx_file)
    answers = served(images, max_batch=64)  # several calls, one of a partial batch
    assert answers.shape == (300, 10) and answers.dtype == np.float32
    np.testing.assert_allclose(answers, expected, atol=1e-5)
    assert served(images[:0]).shape == (0, 10)


def test_a_model_loaded_from_a_keras_file_exports_too(keras_model, tmp_path):
    # Keras refuses to export a model never called: export_onnx calls it first.
    keras_model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", compile=False)
    served = load_classifier(export_onnx(loaded, tmp_path / "m.onnx"))
    images = random_digits(8, seed=4)
    np.testing.assert_allclose(
        served(images), keras.ops.convert_to_numpy(keras_model(images, training=False)), atol=1e-5
    )


@pytest.mark.parametrize("level", ["disabled", "basic", "extended", "all"])
def test_every_graph_optimisation_level_gives_the_same_answers(onnx_file, level):
    images = random_digits(16, seed=5)
    reference = load_classifier(onnx_file, optimization="disabled")(images)
    np.testing.assert_allclose(
        load_classifier(onnx_file, threads=1, optimization=level)(images), reference, atol=1e-6
    )


def test_cuda_asked_for_and_absent_runs_on_the_cpu_and_says_so(onnx_file, caplog):
    with caplog.at_level(logging.WARNING, logger="digitops.infer.classifier"):
        served = load_classifier(onnx_file, providers=(CUDA, CPU))
    assert served.provider == CPU and served.device == "CPU"
    assert any(
        CUDA in record.getMessage() and "running on CPUExecutionProvider" in record.getMessage()
        for record in caplog.records
    )


def test_the_cpu_provider_is_always_the_last_resort():
    assert choose_providers([CUDA], [CPU]) == [CPU]
    assert choose_providers([CUDA, CPU], [CUDA, CPU]) == [CUDA, CPU]
    assert choose_providers([CPU], [CUDA, CPU]) == [CPU]


def test_a_truncated_file_is_refused_with_its_path(onnx_file, tmp_path):
    truncated = tmp_path / "model.onnx"
    truncated.write_bytes(onnx_file.read_bytes()[: onnx_file.stat().st_size // 2])
    with pytest.raises(ModelFileError, match=r"model\.onnx: ONNX Runtime cannot load it"):
        load_classifier(truncated)


def test_a_file_that_is_not_onnx_and_a_missing_one_are_refused(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"\x89PNG\r\n\x1a\n not a model")
    with pytest.raises(ModelFileError, match="cannot load it"):
        load_classifier(tmp_path)
    with pytest.raises(ModelFileError, match=r"no model\.onnx in"):
        load_classifier(tmp_path / "empty")


def test_a_model_that_does_not_read_digits_is_refused(tmp_path):
    # A valid ONNX graph, but of float images: the normaliser hands the model uint8 digits.
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "not-digits",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 28, 28])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 28, 28])],
    )
    path = tmp_path / "float.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(ModelFileError, match=r"not \(B, 28, 28\) uint8 digits"):
        load_classifier(path)


def test_wrong_digits_are_refused_before_the_model_runs(onnx_file):
    served = load_classifier(onnx_file)
    with pytest.raises(ValueError, match="expected \\(B, 28, 28\\) uint8"):
        served(np.zeros((2, 28, 28), np.float32))


def _load_in_a_fresh_process(onnx_file, home, environment: dict[str, str]) -> None:
    code = "import sys; from digitops.infer.classifier import load_classifier; load_classifier(sys.argv[1])"
    env = {key: value for key, value in os.environ.items() if key != TELEMETRY_OPT_OUT}
    subprocess.run(
        [sys.executable, "-c", code, str(onnx_file)],
        env={**env, "HOME": str(home), **environment},
        check=True,
    )


def test_loading_a_model_leaves_no_telemetry_device_id(onnx_file, tmp_path):
    """ONNX Runtime's Linux wheels keep a device id under ~/.cache for their usage telemetry unless told
    not to; digitops turns it off (no id, no upload) unless the environment asks for it."""
    opted_in, ours = tmp_path / "opted-in", tmp_path / "ours"
    _load_in_a_fresh_process(onnx_file, opted_in, {TELEMETRY_OPT_OUT: "0"})
    if not any(opted_in.rglob("deviceid")):
        pytest.skip("this onnxruntime build keeps no telemetry device id")
    _load_in_a_fresh_process(onnx_file, ours, {})
    assert not any(ours.rglob("*")), sorted(map(str, ours.rglob("*")))
