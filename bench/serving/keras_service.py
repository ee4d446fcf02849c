"""Our service as it served before ONNX, for bench/serve.py only: the same service code, with the model run
by TensorFlow from the `.keras` file (bench/serving/keras_classifier.py) instead of ONNX Runtime.

    DIGITOPS_BENCH_KERAS_MODEL=models/candidate.keras \
        bentoml serve bench.serving.keras_service:DigitClassifier --port 3001    # from the repository root

The service module binds `load_classifier` when it is imported, so the TensorFlow loader replaces it first.
"""

from __future__ import annotations

import os
from pathlib import Path

import digitops.infer.classifier
from bench.serving.keras_classifier import KerasClassifier

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
KERAS_MODEL = Path(os.environ.get("DIGITOPS_BENCH_KERAS_MODEL", "models/candidate.keras"))


def _load_keras(folder_or_file, threads=None, **_onnx_only) -> KerasClassifier:
    return KerasClassifier(KERAS_MODEL, threads)


digitops.infer.classifier.load_classifier = _load_keras

from digitops.serve.service import DigitClassifier  # noqa: E402

__all__ = ["DigitClassifier"]
