"""Two reference services for bench/serve.py, each with the shape of our `classify` endpoint (multipart
field `images`, a list of uploaded files in, one prediction per image out):

- `NoOp`: the same HTTP paths, adaptive batching included, with no image decoding and no model, and as
  many workers as ours (DIGITOPS_BENCH_WORKERS, set by bench/serve.py from `serve.workers`): the
  stack's ceiling, which our service can only approach. Tracing is set as ours (no spans without an
  exporter). `POST /classify` (multipart, BentoML's API) and `POST /digit` (the raw image file as the
  body, a plain ASGI route as in our service).
- `BentoDefaults`: the endpoint as BentoML's defaults and documentation would have it, around the same
  model: `list[PIL.Image.Image]` decoded by BentoML, `@bentoml.api(batchable=True)` with its default
  batching limits, one worker, the normaliser and the model called in the batch function.

    bentoml serve bench.serving.reference_services:NoOp --port 3001      # from the repository root
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import bentoml
import numpy as np
from bentoml.validators import ContentType
from PIL import Image
from pydantic import BaseModel, WrapValidator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from digitops.infer.classifier import load_classifier
from digitops.preprocess import normalize_digit
from digitops.serve.tracing import tracing_config


class Prediction(BaseModel):
    digit: int
    confidence: float
    probabilities: list[float]
    model_version: str


CONSTANT = Prediction(digit=0, confidence=1.0, probabilities=[1.0] + [0.0] * 9, model_version="noop/0")


def _read_upload(value: Any, _handler: Any) -> bytes:
    """The no-op's validator: the upload's bytes, neither decoded nor checked."""
    value.file.seek(0)
    return value.file.read()


UploadedBytes = Annotated[Image.Image, WrapValidator(_read_upload)]  # a file part, as in our service
JSON = "application/json"
WORKERS = int(os.environ.get("DIGITOPS_BENCH_WORKERS", "1"))


async def _digit(request: Request) -> Response:
    await request.body()
    return Response(CONSTANT.model_dump_json(), media_type=JSON)


ROUTES = Starlette(routes=[Route("/digit", _digit, methods=["POST"])])


@bentoml.service(
    name="digits-noop",
    workers=WORKERS,
    logging={"access": {"enabled": False}},
    tracing=tracing_config(),  # the same stack as ours
)
@bentoml.asgi_app(ROUTES, path="/")
class NoOp:
    @bentoml.api(batchable=True, max_batch_size=256, max_latency_ms=1000)
    def classify(self, images: list[UploadedBytes]) -> Annotated[list[Prediction], ContentType(JSON)]:
        return [CONSTANT] * len(images)


@bentoml.service(name="digits-bento-defaults")
class BentoDefaults:
    bento_model = bentoml.models.BentoModel(os.environ.get("DIGITOPS_BENTO_MODEL", "digits:latest"))

    def __init__(self) -> None:
        self.classifier = load_classifier(self.bento_model.path)

    @bentoml.api(batchable=True)
    def classify(self, images: list[Image.Image]) -> list[Prediction]:
        digits = np.stack([normalize_digit(image) for image in images])
        probabilities = self.classifier(digits)
        return [
            Prediction(
                digit=int(row.argmax()),
                confidence=float(row.max()),
                probabilities=row.tolist(),
                model_version="digits/?",
            )
            for row in probabilities
        ]
