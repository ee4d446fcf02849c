"""The BentoML service: the champion model behind one batched `classify` endpoint.

    bentoml serve digitops.serve.service:DigitClassifier       # from the repository root (make serve)

Request path: each uploaded file's bytes are read while the request is parsed (`schemas`), then decoded
and normalised in a thread, a few at a time per worker (`decoding`: a bad file fails its own request with a
400, never a batch it would have shared); the service's batcher then coalesces the digits of concurrent
requests into one call of the compiled model. `routes` adds the page
and the lean raw-body endpoints; `settings` reads params.yaml's `serve` section and the model's tag;
`shadow` runs the challenger packaged with the champion, if any, on a share of requests, off the response
path.

The model is the champion's ONNX file, run by ONNX Runtime: no TensorFlow in the service, the bento or the
container. Build argument `gpu` (bentofile-gpu.yaml sets it) requests GPUs from the scheduler and asks ONNX
Runtime for its CUDA provider first (the GPU bento installs onnxruntime-gpu); where CUDA cannot run, the
CPU provider does, and the worker's log says so.
"""

from __future__ import annotations

import gc
import time
from functools import partial
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any

import bentoml
import numpy as np
from bentoml.exceptions import BadInput, BentoMLException, ServiceUnavailable
from bentoml.validators import ContentType
from pydantic import BaseModel, Field

from digitops.digits import NUM_CLASSES
from digitops.infer.classifier import CPU, CUDA, load_classifier
from digitops.infer.inputs import BadInputError
from digitops.infer.reader import optional_reader
from digitops.serve.batcher import Batcher, OverloadedError
from digitops.serve.contributors import NotAllowedError
from digitops.serve.decoding import Decoders, digits_from_uploads, read_photo
from digitops.serve.drift import TrafficMonitor
from digitops.serve.feedback import QuotaExceededError, StorageFullError, store_drawings
from digitops.serve.middleware import ContributorGate, FileFieldsOnly, FormFields, RequestSizeLimit
from digitops.serve.openapi import OpenAPIDocument
from digitops.serve.routes import LEAN_ROUTES
from digitops.serve.schemas import (
    JSON,
    DigitImages,
    FeedbackReceipt,
    Labels,
    Photo,
    Prediction,
    Reading,
    StoredFeedback,
    UploadedFiles,
)
from digitops.serve.settings import (
    CHALLENGER_TAG,
    CONTRIBUTORS,
    FEEDBACK_QUOTA,
    LIMITS,
    MODEL_TAG,
    PARAMS,
    PHOTO_LIMITS,
    QUARANTINE_DIR,
    SERVE,
)
from digitops.serve.shadow import CONFIDENCE_BUCKETS, start_shadow
from digitops.serve.tracing import tracing_config
from digitops.validate import digit_problems


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
    buckets=CONFIDENCE_BUCKETS,  # the shadow challenger's too
)


@bentoml.service(
    name="digits",
    resources={"gpu": ARGUMENTS.gpu} if ARGUMENTS.gpu else {"cpu": "1"},
    traffic={"timeout": 30},
    workers=SERVE.workers,
    logging={"access": {"enabled": SERVE.access_log}},
    tracing=tracing_config(),  # no spans unless a trace exporter is configured (digitops.serve.tracing)
)
@bentoml.asgi_app(LEAN_ROUTES, path="/")
class DigitClassifier:
    bento_model = bentoml.models.BentoModel(MODEL_TAG)
    if CHALLENGER_TAG is not None:  # declared, so that `bentoml build` ships it in the bento
        challenger_model = bentoml.models.BentoModel(CHALLENGER_TAG)

    def __init__(self) -> None:
        started = time.perf_counter()
        stored = self.bento_model
        providers = (CUDA, CPU) if ARGUMENTS.gpu else (CPU,)
        self.classifier = load_classifier(
            stored.path,
            SERVE.threads_per_worker,
            providers=providers,
            optimization=SERVE.graph_optimization,
        )
        # The string reader that reads /read's lines whole, when the model was packaged with one
        self.reader = optional_reader(Path(stored.path), SERVE.threads_per_worker, SERVE.graph_optimization)
        loaded = time.perf_counter()
        labels = stored.info.labels
        self.model_version = (
            f"{labels.get('registered_model', stored.tag.name)}/{labels.get('mlflow_version', '?')}"
        )
        self.classifier.warm_up((1, SERVE.max_batch_size))
        if self.reader is not None:
            self.reader.warm_up()
        # Uploads are decoded in threads, a few at a time (the lean routes' too)
        self.decoders = Decoders(SERVE.max_concurrent_decodes, SERVE.max_concurrent_photos)
        self.batcher = Batcher(
            self.classifier,
            max_batch_size=SERVE.max_batch_size,
            max_wait_s=SERVE.max_latency_ms / 1000,
            on_batch=BATCH_SIZE.observe,
        )
        # Drift gauges of the digits this worker serves; None (logged) without the model's reference profile
        self.monitor = TrafficMonitor.for_model(Path(stored.path), SERVE)
        # The challenger packaged with the champion, on serve.shadow_fraction of requests (None: no shadow)
        self.shadow = start_shadow(CHALLENGER_TAG, SERVE.shadow_fraction, providers, SERVE.graph_optimization)
        # What is loaded by now (ONNX Runtime, BentoML, the model) lives as long as the worker: frozen,
        # these long-lived objects are out of the collector's way, and collections under load scan only the
        # requests' garbage (docs/benchmarks.md).
        gc.collect()
        gc.freeze()
        print(
            f"digitops: serving {self.model_version} ({stored.tag}) with ONNX Runtime on "
            f"{self.classifier.provider}; the model loaded in {loaded - started:.2f} s, warmed up in "
            f"{time.perf_counter() - loaded:.2f} s",
            flush=True,
        )

    async def predict(self, digits: np.ndarray) -> list[dict[str, Any]]:
        """(B, 28, 28) uint8 digits -> one prediction dict each, through the shared batcher.

        Also called by the lean routes (`digitops.serve.routes`). Raises OverloadedError under overload.
        """
        probabilities = await self.batcher(digits)  # (B, NUM_CLASSES) float32
        if self.monitor is not None:
            self.monitor.observe(digits, probabilities)  # never raises
        predictions = []
        for row in probabilities.tolist():
            digit = max(range(NUM_CLASSES), key=row.__getitem__)
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
        if self.shadow is not None:  # after the answers are made; it neither waits nor raises
            self.shadow.offer(digits, probabilities)
        return predictions

    @bentoml.api
    async def classify(self, images: DigitImages) -> Annotated[list[Prediction], ContentType(JSON)]:
        """Classify handwritten digits: each image (PNG, JPEG, ...) -> digit, confidence, 10 probabilities."""
        try:
            digits = await self.decoders.digits(digits_from_uploads, images, LIMITS)  # (B, 28, 28) uint8
        except BadInputError as error:
            raise BadInput(str(error)) from None
        try:
            predictions = await self.predict(digits)
        except OverloadedError as error:
            raise ServiceUnavailable(str(error)) from None
        return [Prediction(**prediction) for prediction in predictions]

    @bentoml.api
    async def read(self, image: Photo) -> Annotated[Reading, ContentType(JSON)]:
        """Read the handwritten digits in a photo or scan: the digits in reading order, with boxes.

        The photo is decoded and segmented off the event loop. With the string reader (packaged beside the
        model), each line is read whole and separators come back apart; without it, all the digits found go
        through the classifier in one call.
        """
        try:
            result = await self.decoders.photos(read_photo, image, PHOTO_LIMITS, self.classifier, self.reader)
        except BadInputError as error:
            raise BadInput(str(error)) from None
        return Reading(**result.to_dict(), model_version=self.model_version)

    @bentoml.api
    async def feedback(
        self, images: UploadedFiles, labels: Labels, ctx: bentoml.Context
    ) -> Annotated[FeedbackReceipt, ContentType(JSON)]:
        """Contribute labelled drawings (multipart: files `images`, text `labels` = a JSON list such as [7]).

        Who may contribute is `serve.feedback` (a bearer token, loopback clients only, anyone, or no one).
        Each drawing is checked (an image with ink, a label 0-9, the data contract) and stored once, with
        its sender, in the feedback folder's quarantine, within the sender's daily quota and the folder's
        cap; `digitops drawings accept` moves reviewed ones to where the next `dvc repro` trains on them.
        """
        request = ctx.request
        try:
            client = CONTRIBUTORS.contributor(
                request.headers.get("authorization"), request.client.host if request.client else None
            )
        except NotAllowedError as error:
            raise BentoMLException(str(error), error_code=error.status) from None
        if len(images) != len(labels):
            raise BadInput(f"{len(images)} images but {len(labels)} labels: send one label per image")
        try:  # the drawings are decoded as digits are: in a thread, a few at a time
            stored = await self.decoders.digits(
                partial(
                    store_drawings,
                    list(zip(images, labels, strict=True)),
                    QUARANTINE_DIR,
                    LIMITS,
                    client=client,
                    quota=FEEDBACK_QUOTA,
                    contract=partial(digit_problems, policy=PARAMS.validate_),
                )
            )
        except BadInputError as error:
            raise BadInput(str(error)) from None
        except QuotaExceededError as error:
            raise BentoMLException(str(error), error_code=HTTPStatus.TOO_MANY_REQUESTS) from None
        except StorageFullError as error:
            raise BentoMLException(str(error), error_code=HTTPStatus.INSUFFICIENT_STORAGE) from None
        return FeedbackReceipt(
            stored=[StoredFeedback(sha256=s.sha256, label=s.label, duplicate=s.duplicate) for s in stored]
        )


def _form_fields(service) -> dict[str, FormFields]:
    """Each API route that takes files -> its file fields and its other fields, as BentoML sees them."""
    forms = {}
    for api in service.apis.values():
        files = frozenset(api.input_spec.multipart_fields)
        if files:
            forms[api.route] = FormFields(files, frozenset(api.input_spec.model_fields) - files)
    return forms


# Outermost first: the size limit, then who may contribute (before an upload is read), then the check that
# file fields hold files.
DigitClassifier.add_asgi_middleware(RequestSizeLimit, max_bytes=SERVE.max_request_bytes)
DigitClassifier.add_asgi_middleware(
    ContributorGate,
    route="/feedback",
    policy=CONTRIBUTORS,
    quarantine=QUARANTINE_DIR,
    max_bytes=SERVE.feedback_max_bytes,
)
DigitClassifier.add_asgi_middleware(FileFieldsOnly, routes=_form_fields(DigitClassifier))
# GET /docs.json: BentoML's OpenAPI document with each API's real error answers (digitops.serve.openapi)
DigitClassifier.add_asgi_middleware(OpenAPIDocument, document=lambda: DigitClassifier.openapi_spec.asdict())
