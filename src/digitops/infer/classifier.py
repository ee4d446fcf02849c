"""The model as the service runs it: an ONNX file, run by ONNX Runtime (no TensorFlow).

The train stage exports the Keras model to `model.onnx` (digitops.export); the graph takes the normaliser's
(B, 28, 28) uint8 digits directly and returns (B, 10) probabilities. The service, `digitops predict` and
the promote stage's infra validation all load models with `load_classifier`, so what is validated before
an alias moves is exactly what will serve.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from digitops.digits import NUM_CLASSES
from digitops.errors import DigitopsError
from digitops.preprocess import MNIST_SIZE

MODEL_FILE = "model.onnx"  # at the root of an MLflow ONNX model, and inside our BentoML model
MODEL_CARD = "model_card.md"  # beside MODEL_FILE in both, when promote recorded one (digitops.card)
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
# ONNX Runtime's graph optimisation levels, by the names params.yaml uses (serve.graph_optimization).
OPTIMIZATION_LEVELS = ("disabled", "basic", "extended", "all")

logger = logging.getLogger(__name__)

# ONNX Runtime's Linux wheels send usage telemetry and keep a device id under ~/.cache unless this is set
# before its first session: off wherever digitops loads a model, unless the environment says otherwise.
TELEMETRY_OPT_OUT = "ORT_DISABLE_TELEMETRY"
os.environ.setdefault(TELEMETRY_OPT_OUT, "1")


class ModelFileError(DigitopsError):
    """The file is not an ONNX model ONNX Runtime can run, or not one that reads digits."""


class Classifier:
    """(B, 28, 28) uint8 digits, as `digitops.preprocess` makes them -> (B, 10) float32 probabilities.

    Args:
        model_path: the `.onnx` file.
        threads: ONNX Runtime's intra-op threads (None or 0: its default, one per core).
        providers: execution providers in order of preference; those this onnxruntime build lacks are
            skipped with a log line (the CPU provider is always the last resort).
        optimization: graph optimisation level, one of OPTIMIZATION_LEVELS.

    Raises:
        ModelFileError: the file is missing, truncated, not ONNX, or its input or output is not digits'.
    """

    def __init__(
        self,
        model_path: Path,
        threads: int | None = None,
        providers: Sequence[str] = (CPU,),
        optimization: str = "all",
    ) -> None:
        self.session, chosen = open_session(model_path, threads, providers, optimization)
        self._input, self._output = _digit_signature(self.session, model_path)
        running = self.session.get_providers()[0]
        if running != chosen[0]:
            logger.warning("%s could not start on this machine: running on %s", chosen[0], running)
        self.provider = running
        self.device = "GPU" if running == CUDA else "CPU"

    def __call__(self, images: np.ndarray, max_batch: int = 1024) -> np.ndarray:
        """Probabilities for any number of digits, `max_batch` at a time (bounds the activations' memory)."""
        if images.ndim != 3 or images.shape[1:] != (MNIST_SIZE, MNIST_SIZE) or images.dtype != np.uint8:
            raise ValueError(f"expected (B, 28, 28) uint8 digits, got {images.shape} {images.dtype}")
        if len(images) <= max_batch:
            return self._run(images)
        return np.concatenate(
            [self._run(images[start : start + max_batch]) for start in range(0, len(images), max_batch)]
        )

    def _run(self, images: np.ndarray) -> np.ndarray:
        if not len(images):
            return np.zeros((0, NUM_CLASSES), np.float32)
        return self.session.run([self._output], {self._input: np.ascontiguousarray(images)})[0]

    def warm_up(self, batch_sizes: tuple[int, ...] = (1, 64)) -> None:
        """Run the model once per batch size, so the first requests do not pay for memory planning."""
        for size in batch_sizes:
            self(np.zeros((size, MNIST_SIZE, MNIST_SIZE), np.uint8))


def open_session(model_path: Path, threads: int | None, providers: Sequence[str], optimization: str):
    """An ONNX Runtime session for `model_path` and the providers chosen for it (`choose_providers`).

    Raises:
        ModelFileError: ONNX Runtime cannot load the file (missing, truncated, not ONNX).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 0
    options.inter_op_num_threads = 1  # one graph at a time: parallelism comes from the batch
    options.graph_optimization_level = _optimization_level(ort, optimization)
    chosen = choose_providers(providers, ort.get_available_providers())
    try:
        return ort.InferenceSession(str(model_path), options, providers=chosen), chosen
    except Exception as error:  # ONNX Runtime's own exception types (NoSuchFile, InvalidProtobuf, Fail)
        raise ModelFileError(f"{model_path}: ONNX Runtime cannot load it: {error}") from None


def choose_providers(wanted: Sequence[str], available: Sequence[str]) -> list[str]:
    """The wanted execution providers this build has, in order, with the CPU provider as the last resort.

    A wanted provider the build lacks (CUDA with the CPU-only onnxruntime package) gets a log line.
    """
    missing = [name for name in wanted if name not in available]
    chosen = [name for name in wanted if name in available]
    if CPU not in chosen:
        chosen.append(CPU)
    if missing:
        logger.warning(
            "%s asked for but not in this onnxruntime build (it has %s): running on %s",
            ", ".join(missing),
            ", ".join(available),
            chosen[0],
        )
    return chosen


def find_model_file(folder: Path) -> Path:
    """The `.onnx` file inside a downloaded MLflow model or a BentoML model folder."""
    candidate = folder / MODEL_FILE
    if candidate.is_file():
        return candidate
    raise ModelFileError(f"no {MODEL_FILE} in {folder}")


def load_classifier(
    folder_or_file: Path,
    threads: int | None = None,
    providers: Sequence[str] = (CPU,),
    optimization: str = "all",
) -> Classifier:
    """Load a classifier from an `.onnx` file or a folder that holds `model.onnx` (see `Classifier`)."""
    path = Path(folder_or_file)
    return Classifier(path if path.is_file() else find_model_file(path), threads, providers, optimization)


def _optimization_level(ort, name: str):
    levels = dict(
        zip(
            OPTIMIZATION_LEVELS,
            (
                ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            ),
            strict=True,
        )
    )
    if name not in levels:
        raise ValueError(f"unknown graph optimisation level {name!r}; expected one of {OPTIMIZATION_LEVELS}")
    return levels[name]


def _digit_signature(session, model_path: Path) -> tuple[str, str]:
    """The names of the model's one input, (B, 28, 28) uint8, and its first output, (B, 10) float."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or not outputs:
        raise ModelFileError(f"{model_path}: expected one input and an output, got {len(inputs)} inputs")
    source, result = inputs[0], outputs[0]
    if source.type != "tensor(uint8)" or list(source.shape[1:]) != [MNIST_SIZE, MNIST_SIZE]:
        raise ModelFileError(
            f"{model_path}: its input is {source.type} {source.shape}, not (B, 28, 28) uint8 digits"
        )
    if result.type != "tensor(float)" or list(result.shape[1:]) != [NUM_CLASSES]:
        raise ModelFileError(f"{model_path}: its output is {result.type} {result.shape}, not (B, 10) floats")
    return source.name, result.name
