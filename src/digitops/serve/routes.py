"""The lean routes, mounted beside the service's `@bentoml.api` methods: the page, the model card and two
raw-body endpoints.

    GET  /        the page to draw a digit, read a photo and contribute drawings (files in web/)
    GET  /model   the served version's model card (Markdown), as promote recorded it (digitops.card)
    POST /digit   the body is one image file (PNG, JPEG, ...) -> one prediction
    POST /digits  the body is N digits as raw (N, 28, 28) uint8 bytes -> N predictions

A BentoML API cannot take a raw body, and its multipart path (form parsing, pydantic models per request)
costs more CPU than the model; these routes are for clients that care about throughput. They call the
service's `predict`, so their digits share the batcher with `/classify`'s.
"""

from __future__ import annotations

import json
from pathlib import Path

import bentoml
import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from digitops.infer.classifier import MODEL_CARD
from digitops.infer.inputs import BadInputError, check_count
from digitops.preprocess import MNIST_SIZE
from digitops.serve.batcher import OverloadedError
from digitops.serve.decoding import digit_from_upload
from digitops.serve.schemas import JSON
from digitops.serve.settings import LIMITS

WEB_DIR = Path(__file__).with_name("web")  # the drawing page (GET /)
MARKDOWN = "text/markdown; charset=utf-8"


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
    service = bentoml.get_current_service()  # this worker's DigitClassifier
    try:
        data = await _read_body(request, LIMITS.max_bytes)
        digit = await service.decoders.digits(digit_from_upload, data, LIMITS)  # (28, 28) uint8
    except BadInputError as error:
        return JSONResponse({"error": str(error)}, status_code=400)
    return await _predictions_response(digit[None], single=True)


async def _classify_digits(request: Request) -> Response:
    """POST /digits: the body is N digits as raw (N, 28, 28) uint8 bytes -> N predictions."""
    limit = LIMITS.max_images * MNIST_SIZE * MNIST_SIZE
    try:
        digits = _digits_from_array(await _read_body(request, limit))
    except BadInputError as error:
        return JSONResponse({"error": str(error)}, status_code=400)
    return await _predictions_response(digits, single=False)


async def _predictions_response(digits: np.ndarray, single: bool) -> Response:
    """(B, 28, 28) uint8 digits -> their predictions as JSON (one object when `single`), or a 503."""
    try:
        predictions = await bentoml.get_current_service().predict(digits)  # this worker's DigitClassifier
    except OverloadedError as error:
        return JSONResponse({"error": str(error)}, status_code=503, headers={"Retry-After": "1"})
    body = predictions[0] if single else predictions
    return Response(json.dumps(body, separators=(",", ":")), media_type=JSON)


async def _page(_request: Request) -> Response:
    """GET /: the page to draw a digit, read a photo and contribute drawings."""
    return FileResponse(WEB_DIR / "index.html")


async def _model_card(_request: Request) -> Response:
    """GET /model: the model card that package copied into the BentoML model beside model.onnx; a 404 that
    says so for a version registered before promote recorded cards."""
    service = bentoml.get_current_service()  # this worker's DigitClassifier
    card = Path(service.bento_model.path) / MODEL_CARD
    if card.is_file():
        return FileResponse(card, media_type=MARKDOWN)
    return Response(
        f"# Model card: {service.model_version}\n\nNo model card was recorded for this version: it was "
        "registered before promote wrote model cards.\n",
        status_code=404,
        media_type=MARKDOWN,
    )


LEAN_ROUTES = Starlette(
    routes=[
        Route("/", _page, methods=["GET"]),
        Route("/model", _model_card, methods=["GET"]),
        Mount("/web", StaticFiles(directory=WEB_DIR, check_dir=False), name="web"),
        Route("/digit", _classify_digit, methods=["POST"]),
        Route("/digits", _classify_digits, methods=["POST"]),
    ]
)
