"""The model as the service runs it: loaded once from a `.keras` file, called through one compiled function.

Both the service and the promote stage's infra validation load models with `load_classifier`, so what is
validated before an alias moves is exactly what will serve.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from digitops.preprocess import MNIST_SIZE

MODEL_FILE = "model.keras"  # inside an MLflow model's data/ folder, and inside our BentoML model


class Classifier:
    """(B, 28, 28) uint8 digits, as `digitops.preprocess` makes them -> (B, 10) float32 probabilities."""

    def __init__(self, model_path: Path, threads: int | None = None) -> None:
        import keras
        import tensorflow as tf

        _enable_gpu_memory_growth(tf)
        if threads:  # before TensorFlow runs its first operation; later calls raise RuntimeError
            with contextlib.suppress(RuntimeError):
                tf.config.threading.set_intra_op_parallelism_threads(threads)
                tf.config.threading.set_inter_op_parallelism_threads(threads)
        self.model = keras.saving.load_model(model_path, compile=False)
        self.device = "GPU" if tf.config.list_logical_devices("GPU") else "CPU"
        # One graph for every batch size: traced once, never retraced (the batch dimension is None).
        self._probabilities = tf.function(
            lambda images: self.model(images, training=False),
            input_signature=[tf.TensorSpec((None, MNIST_SIZE, MNIST_SIZE), tf.uint8)],
            reduce_retracing=True,
        )

    def __call__(self, images: np.ndarray, max_batch: int = 1024) -> np.ndarray:
        """Probabilities for any number of digits, `max_batch` at a time (bounds the activations' memory)."""
        if images.ndim != 3 or images.shape[1:] != (MNIST_SIZE, MNIST_SIZE) or images.dtype != np.uint8:
            raise ValueError(f"expected (B, 28, 28) uint8 digits, got {images.shape} {images.dtype}")
        if len(images) <= max_batch:
            return self._probabilities(images).numpy()
        return np.concatenate(
            [
                self._probabilities(images[start : start + max_batch]).numpy()
                for start in range(0, len(images), max_batch)
            ]
        )

    def warm_up(self, batch_sizes: tuple[int, ...] = (1, 64)) -> None:
        """Run the compiled function once per batch size, so the first requests do not pay for tracing."""
        for size in batch_sizes:
            self(np.zeros((size, MNIST_SIZE, MNIST_SIZE), np.uint8))


def find_model_file(folder: Path) -> Path:
    """The `.keras` file inside a downloaded MLflow model (data/model.keras) or a BentoML model folder."""
    for candidate in (folder / MODEL_FILE, folder / "data" / MODEL_FILE):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no {MODEL_FILE} in {folder} or {folder / 'data'}")


def load_classifier(folder_or_file: Path, threads: int | None = None) -> Classifier:
    """Load a classifier from a `.keras` file or a folder that holds one (see `find_model_file`).

    `threads` caps TensorFlow's threads in this process (None: TensorFlow's default, one per core).
    """
    path = Path(folder_or_file)
    return Classifier(path if path.is_file() else find_model_file(path), threads)


def _enable_gpu_memory_growth(tf) -> None:
    """Let TensorFlow take GPU memory as it needs it instead of all of it at start-up (a no-op on CPU).

    Must run before TensorFlow initialises the GPU; later calls raise RuntimeError, which is harmless here.
    """
    for gpu in tf.config.list_physical_devices("GPU"):
        with contextlib.suppress(RuntimeError):
            tf.config.experimental.set_memory_growth(gpu, True)
