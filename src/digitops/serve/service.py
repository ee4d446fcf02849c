"""The BentoML service: the champion model behind one batched `classify` endpoint.

    bentoml serve digitops.serve.service:DigitClassifier       # from the repository root (make serve)

Request path: each uploaded file is checked and normalised while the request is parsed (a bad file fails
its own request with a 400, never a batch it would have shared); BentoML's adaptive batching then
coalesces the digits of concurrent requests into one call of the compiled model.

Settings come from the `serve` section of params.yaml (DIGITOPS_PARAMS names another file); the model is
the BentoML model DIGITOPS_BENTO_MODEL (default `digits:latest`: what the package stage imported last).
Build argument `gpu` (bentofile-gpu.yaml sets it) requests GPUs from the scheduler; TensorFlow uses a
visible GPU either way.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import bentoml
import numpy as np
from PIL import Image
from pydantic import BaseModel, Field, WrapValidator

from digitops.config import load_params
from digitops.serve.classifier import load_classifier
from digitops.serve.inputs import (
    BadInputError,
    InputLimits,
    check_count,
    check_pixels,
    digit_from_image,
    open_image,
)

SETTINGS = load_params(os.environ.get("DIGITOPS_PARAMS", "params.yaml")).serve
LIMITS = InputLimits(
    max_images=SETTINGS.max_images_per_request,
    max_bytes=SETTINGS.max_image_bytes,
    max_pixels=SETTINGS.max_image_pixels,
)
MODEL_TAG = os.environ.get("DIGITOPS_BENTO_MODEL", "digits:latest")


class BuildArguments(BaseModel):
    gpu: int = Field(default=0, ge=0)  # GPUs to request per replica (bentoml build/serve --arg gpu=1)


ARGUMENTS = bentoml.use_arguments(BuildArguments)

PREDICTED_DIGITS = bentoml.metrics.Counter(
    name="digitops_predicted_digit", documentation="Predictions by digit", labelnames=["digit"]
)
CONFIDENCE = bentoml.metrics.Histogram(
    name="digitops_prediction_confidence",
    documentation="Probability of the predicted digit",
    buckets=(0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.999, 1.0),
)


def _digit_image(value: Any, _handler: Any) -> Image.Image:
    """Validates one upload (file, bytes or PIL image) into the normalised (28, 28) digit, as an 'L' image.

    Replaces BentoML's own image decoding (which answers unreadable bytes with a 500): a BadInputError is
    a ValueError, so pydantic turns it into a validation error and BentoML answers 400 with its message.
    """
    if isinstance(value, Image.Image):
        image = value
        check_pixels(image, LIMITS)
    elif isinstance(value, bytes):
        image = open_image(value, LIMITS)
    elif hasattr(value, "file"):  # an uploaded file (starlette UploadFile)
        value.file.seek(0)
        image = open_image(value.file.read(LIMITS.max_bytes + 1), LIMITS)
    else:
        raise BadInputError("expected an image file (multipart upload)")
    return Image.fromarray(digit_from_image(image), mode="L")


def _image_list(value: Any, handler: Any) -> list[Image.Image]:
    """Checks the count before any image is decoded, then validates each image."""
    if isinstance(value, list):
        check_count(len(value), LIMITS)
    return handler(value)


DigitImage = Annotated[Image.Image, WrapValidator(_digit_image)]


class Prediction(BaseModel):
    digit: int  # 0-9
    confidence: float  # the probability of `digit`
    probabilities: list[float]  # ten, indexed by digit
    model_version: str  # registered model and version, e.g. "digits/3"


@bentoml.service(
    name="digits",
    resources={"gpu": ARGUMENTS.gpu} if ARGUMENTS.gpu else {"cpu": "1"},
    traffic={"timeout": 30},
    workers=1,
)
class DigitClassifier:
    bento_model = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        stored = self.bento_model
        self.classifier = load_classifier(stored.path)
        labels = stored.info.labels
        self.model_version = (
            f"{labels.get('registered_model', stored.tag.name)}/{labels.get('mlflow_version', '?')}"
        )
        self.classifier.warm_up((1, SETTINGS.max_batch_size))
        print(
            f"digitops: serving {self.model_version} ({stored.tag}) on {self.classifier.device}", flush=True
        )

    @bentoml.api(
        batchable=True, max_batch_size=SETTINGS.max_batch_size, max_latency_ms=SETTINGS.max_latency_ms
    )
    def classify(self, images: Annotated[list[DigitImage], WrapValidator(_image_list)]) -> list[Prediction]:
        """Classify handwritten digits: each image (PNG, JPEG, ...) -> digit, confidence, 10 probabilities."""
        digits = np.stack([np.asarray(image, dtype=np.uint8) for image in images])  # (B, 28, 28) uint8
        probabilities = self.classifier(digits)  # (B, 10) float32
        predicted = probabilities.argmax(axis=1)
        results = []
        for digit, row in zip(predicted.tolist(), probabilities.tolist(), strict=True):
            PREDICTED_DIGITS.labels(digit=str(digit)).inc()
            CONFIDENCE.observe(row[digit])
            results.append(
                Prediction(
                    digit=digit, confidence=row[digit], probabilities=row, model_version=self.model_version
                )
            )
        return results
