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

import gc
import json
import os
import time
from pathlib import Path
from typing import Annotated, Any

import anyio
import bentoml
import numpy as np
from bentoml.exceptions import BadInput, ServiceUnavailable
from bentoml.validators import ContentType
from PIL import Image
from pydantic import BaseModel, Field, StrictInt, WrapValidator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from digitops.config import load_params
from digitops.infer.classifier import load_classifier
from digitops.infer.inputs import (
    BadInputError,
    InputLimits,
    check_count,
    check_pixels,
    digit_from_image,
    open_image,
)
from digitops.infer.segment import read_digits
from digitops.preprocess import MNIST_SIZE
from digitops.serve.batcher import Batcher, OverloadedError
from digitops.serve.feedback import feedback_dir, store_drawings
from digitops.serve.middleware import RequestSizeLimit
from digitops.serve.tracing import tracing_config

PARAMS = load_params(os.environ.get("DIGITOPS_PARAMS", "params.yaml"))
SETTINGS = PARAMS.serve
FEEDBACK_DIR = feedback_dir(default=PARAMS.base.paths.feedback)  # DIGITOPS_FEEDBACK_DIR overrides
WEB_DIR = Path(__file__).with_name("web")  # the drawing page (GET /)
LIMITS = InputLimits(
    max_images=SETTINGS.max_images_per_request,
    max_bytes=SETTINGS.max_image_bytes,
    max_pixels=SETTINGS.max_image_pixels,
)
# Declared, so that BentoML does not rebuild the output's JSON schema for every response to find it
# (a quarter of a worker's CPU under load, measured: docs/benchmarks.md).
JSON = "application/json"
MODEL_TAG = os.environ.get("DIGITOPS_BENTO_MODEL", "digits:latest")


class BuildArguments(BaseModel):
    gpu: int = Field(default=0, ge=0)  # GPUs to request per replica (bentoml build/serve --arg gpu=1)


ARGUMENTS = bentoml.use_arguments(BuildArguments)

PREDICTED_DIGITS = bentoml.metrics.Counter(
    name="digitops_predicted_digit", documentation="Predictions by digit", labelnames=["digit"]
)
BATCH_SIZE = bentoml.metrics.Histogram(
    name="digitops_batch_size",
    documentation="Digits per model call (adaptive batching)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
CONFIDENCE = bentoml.metrics.Histogram(
    name="digitops_prediction_confidence",
    documentation="Probability of the predicted digit",
    buckets=(0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.999, 1.0),
)


def _digit_image(value: Any, handler: Any) -> Image.Image:
    """Validates one upload (file, bytes or PIL image) into the normalised (28, 28) digit, as an 'L' image.

    Replaces BentoML's own image decoding (which answers unreadable bytes with a 500): a BadInputError is
    a ValueError, so pydantic turns it into a validation error and BentoML answers 400 with its message.
    """
    return Image.fromarray(digit_from_image(_photo(value, handler)), mode="L")


def _image_list(value: Any, handler: Any) -> list[Image.Image]:
    """Checks the count before any image is decoded, then validates each image."""
    if isinstance(value, list):
        check_count(len(value), LIMITS)
    return handler(value)


def _upload_bytes(value: Any, _handler: Any) -> bytes:
    """An uploaded file's bytes, undecoded, read to one byte past the limit (`open_image` refuses more)."""
    if isinstance(value, bytes):
        return value
    if hasattr(value, "file"):  # an uploaded file (starlette UploadFile)
        value.file.seek(0)
        return value.file.read(LIMITS.max_bytes + 1)
    raise BadInputError("expected an image file (multipart upload)")


def _photo(value: Any, handler: Any) -> Image.Image:
    """Validates one upload (file, bytes or PIL image) into a decoded PIL image, within the size limits."""
    if isinstance(value, Image.Image):
        check_pixels(value, LIMITS)
        return value
    return open_image(_upload_bytes(value, handler), LIMITS)


DigitImage = Annotated[Image.Image, WrapValidator(_digit_image)]
Photo = Annotated[Image.Image, WrapValidator(_photo)]
UploadedFile = Annotated[Image.Image, WrapValidator(_upload_bytes)]  # a multipart file part, as bytes


class StoredFeedback(BaseModel):
    sha256: str  # the stored PNG's content hash (its file name in the feedback folder)
    label: int
    duplicate: bool  # already in the folder with this label: stored once


class FeedbackReceipt(BaseModel):
    stored: list[StoredFeedback]


class ReadDigitOut(BaseModel):
    digit: int
    confidence: float
    box: tuple[int, int, int, int]  # x, y, width, height in the photo's pixels


class Reading(BaseModel):
    text: str  # the digits in reading order, lines separated by a newline ("" when none were found)
    digits: list[ReadDigitOut]
    model_version: str


class Prediction(BaseModel):
    digit: int  # 0-9
    confidence: float  # the probability of `digit`
    probabilities: list[float]  # ten, indexed by digit
    model_version: str  # registered model and version, e.g. "digits/3"


def _digit_from_body(data: bytes) -> np.ndarray:
    """One uploaded image file (the whole request body) -> its (28, 28) uint8 digit; BadInputError if bad."""
    return digit_from_image(open_image(data, LIMITS))


def _digits_from_array(data: bytes) -> np.ndarray:
    """A request body of N x 784 bytes (N digits already in MNIST format, row-major) -> (N, 28, 28) uint8."""
    count, remainder = divmod(len(data), MNIST_SIZE * MNIST_SIZE)
    if remainder or not count:
        raise BadInputError(
            f"expected N x {MNIST_SIZE * MNIST_SIZE} bytes (N digits of 28x28 uint8), got {len(data)} bytes"
        )
    check_count(count, LIMITS)
    return np.frombuffer(data, dtype=np.uint8).reshape(count, MNIST_SIZE, MNIST_SIZE)


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (BadInputError) as soon as it grows past `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadInputError(f"the body has {int(declared):,} bytes; the limit is {limit:,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadInputError(f"the body is over the limit of {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _classify_digit(request: Request) -> Response:
    """POST /digit: the body is one image file (PNG, JPEG, ...) -> one prediction."""
    try:
        digit = _digit_from_body(await _read_body(request, LIMITS.max_bytes))
    except BadInputError as error:
        return JSONResponse({"error": str(error)}, status_code=400)
    return await _predictions_response(bentoml.get_current_service(), digit[None], single=True)


async def _classify_digits(request: Request) -> Response:
    """POST /digits: the body is N digits as raw (N, 28, 28) uint8 bytes -> N predictions."""
    limit = LIMITS.max_images * MNIST_SIZE * MNIST_SIZE
    try:
        digits = _digits_from_array(await _read_body(request, limit))
    except BadInputError as error:
        return JSONResponse({"error": str(error)}, status_code=400)
    return await _predictions_response(bentoml.get_current_service(), digits, single=False)


async def _predictions_response(service: DigitClassifier, digits: np.ndarray, single: bool) -> Response:
    try:
        predictions = await service.predict(digits)
    except OverloadedError as error:
        return JSONResponse({"error": str(error)}, status_code=503, headers={"Retry-After": "1"})
    body = predictions[0] if single else predictions
    return Response(json.dumps(body, separators=(",", ":")), media_type=JSON)


async def _page(_request: Request) -> Response:
    """GET /: the page to draw a digit, read a photo and contribute drawings."""
    return FileResponse(WEB_DIR / "index.html")


LEAN_ROUTES = Starlette(
    routes=[
        Route("/", _page, methods=["GET"]),
        Mount("/web", StaticFiles(directory=WEB_DIR, check_dir=False), name="web"),
        Route("/digit", _classify_digit, methods=["POST"]),
        Route("/digits", _classify_digits, methods=["POST"]),
    ]
)


@bentoml.service(
    name="digits",
    resources={"gpu": ARGUMENTS.gpu} if ARGUMENTS.gpu else {"cpu": "1"},
    traffic={"timeout": 30},
    workers=SETTINGS.workers,
    logging={"access": {"enabled": SETTINGS.access_log}},
    tracing=tracing_config(),  # no spans unless a trace exporter is configured (digitops.serve.tracing)
)
@bentoml.asgi_app(LEAN_ROUTES, path="/")
class DigitClassifier:
    bento_model = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        started = time.perf_counter()
        stored = self.bento_model
        self.classifier = load_classifier(stored.path, SETTINGS.threads_per_worker)  # imports TensorFlow
        loaded = time.perf_counter()
        labels = stored.info.labels
        self.model_version = (
            f"{labels.get('registered_model', stored.tag.name)}/{labels.get('mlflow_version', '?')}"
        )
        self.classifier.warm_up((1, SETTINGS.max_batch_size))
        self.batcher = Batcher(
            self.classifier,
            max_batch_size=SETTINGS.max_batch_size,
            max_wait_s=SETTINGS.max_latency_ms / 1000,
            on_batch=BATCH_SIZE.observe,
        )
        # What is loaded by now (TensorFlow, Keras, BentoML, the model) lives as long as the worker: out of
        # the garbage collector's way with it, so that collections under load scan only the requests'
        # garbage (p99 at 64 clients ~440 -> ~140 ms: docs/benchmarks.md).
        gc.collect()
        gc.freeze()
        print(
            f"digitops: serving {self.model_version} ({stored.tag}) on {self.classifier.device}; "
            f"TensorFlow and the model loaded in {loaded - started:.1f} s, warmed up in "
            f"{time.perf_counter() - loaded:.1f} s",
            flush=True,
        )

    async def predict(self, digits: np.ndarray) -> list[dict[str, Any]]:
        """(B, 28, 28) uint8 digits -> one prediction dict each, through the shared batcher."""
        probabilities = await self.batcher(digits)  # (B, 10) float32
        predictions = []
        for row in probabilities.tolist():
            digit = max(range(10), key=row.__getitem__)
            PREDICTED_DIGITS.labels(digit=str(digit)).inc()
            CONFIDENCE.observe(row[digit])
            predictions.append(
                {
                    "digit": digit,
                    "confidence": row[digit],
                    "probabilities": row,
                    "model_version": self.model_version,
                }
            )
        return predictions

    @bentoml.api
    async def classify(
        self, images: Annotated[list[DigitImage], WrapValidator(_image_list)]
    ) -> Annotated[list[Prediction], ContentType(JSON)]:
        """Classify handwritten digits: each image (PNG, JPEG, ...) -> digit, confidence, 10 probabilities."""
        digits = np.stack([np.asarray(image, dtype=np.uint8) for image in images])  # (B, 28, 28) uint8
        try:
            predictions = await self.predict(digits)
        except OverloadedError as error:
            raise ServiceUnavailable(str(error)) from None
        return [Prediction(**prediction) for prediction in predictions]

    @bentoml.api
    async def read(self, image: Photo) -> Annotated[Reading, ContentType(JSON)]:
        """Read the handwritten digits in a photo or scan: the digits in reading order, with boxes.

        The photo is segmented off the event loop; all its digits go through the model in one call.
        """
        result = await anyio.to_thread.run_sync(read_digits, image, self.classifier)
        return Reading(**result.to_dict(), model_version=self.model_version)

    @bentoml.api
    def feedback(
        self,
        images: Annotated[list[UploadedFile], WrapValidator(_image_list)],
        labels: list[StrictInt],
    ) -> Annotated[FeedbackReceipt, ContentType(JSON)]:
        """Contribute labelled drawings (multipart: files `images`, text `labels` = a JSON list such as [7]).

        Each is checked (an image with ink, a label 0-9) and stored once, atomically, in the feedback
        folder for the next `dvc repro` (when `ingest.sources` lists `drawings`).
        """
        if len(images) != len(labels):
            raise BadInput(f"{len(images)} images but {len(labels)} labels: send one label per image")
        try:
            stored = store_drawings(list(zip(images, labels, strict=True)), FEEDBACK_DIR, LIMITS)
        except BadInputError as error:
            raise BadInput(str(error)) from None
        return FeedbackReceipt(
            stored=[StoredFeedback(sha256=s.sha256, label=s.label, duplicate=s.duplicate) for s in stored]
        )


DigitClassifier.add_asgi_middleware(RequestSizeLimit, max_bytes=SETTINGS.max_request_bytes)
