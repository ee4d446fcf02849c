"""The model as the service ran it before ONNX: the `.keras` file under TensorFlow, called through one
compiled `tf.function`. Kept for the benchmarks only (bench/serve.py, bench/onnx_runtime.py), to compare
ONNX Runtime with it in one run; nothing in the service, the bento or the container imports it."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

MNIST_SIZE = 28


class KerasClassifier:
    """(B, 28, 28) uint8 digits -> (B, 10) float32 probabilities, like the ONNX Classifier."""

    provider = "TensorFlow"

    def __init__(self, model_path: Path, threads: int | None = None) -> None:
        import keras
        import tensorflow as tf

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
        return np.concatenate(
            [
                self._probabilities(images[start : start + max_batch]).numpy()
                for start in range(0, max(len(images), 1), max_batch)
            ]
        )

    def warm_up(self, batch_sizes: tuple[int, ...] = (1, 64)) -> None:
        for size in batch_sizes:
            self(np.zeros((size, MNIST_SIZE, MNIST_SIZE), np.uint8))
