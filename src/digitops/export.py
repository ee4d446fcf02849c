"""Export: the trained Keras model -> the ONNX file that serves (Keras' exporter, which uses tf2onnx).

TensorFlow stays the training framework; the service, `digitops predict` and the container run the ONNX
file with ONNX Runtime (digitops.infer.classifier). The promote stage checks that both give the same
answers before a version can serve.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

# Imported for its effect: ONNX Runtime's telemetry off before MLflow's ONNX flavour loads ONNX Runtime.
import digitops.infer.classifier  # noqa: F401
from digitops.io import atomic_path
from digitops.preprocess import MNIST_SIZE


def export_onnx(model: keras.Model, path: Path) -> Path:
    """Write `model` to `path` as ONNX, atomically; the graph takes (B, 28, 28) uint8 like the model."""
    # A model loaded from a .keras file has no traced call yet, and Keras refuses to export one.
    model(np.zeros((1, MNIST_SIZE, MNIST_SIZE), np.uint8), training=False)
    with atomic_path(path) as tmp_path:
        model.export(str(tmp_path), format="onnx", verbose=False)
    return path
