"""The service's OpenAPI document (`GET /docs.json`): BentoML's, completed with what it cannot generate.

BentoML builds the document from the APIs' signatures: their fields, which are required, and the counts and
ranges that `schemas` declares. It cannot know what answers the service gives besides 200: it declares
400, 404 and 500 for every API, each with one body shape, and the 400 shape is not the one it sends. The
bodies that really come back for an error are three:

- `{"error": "..."}` from the service's ASGI middleware (a 400 for a part that may not pass, 401 and 403
  from the contributor gate, 413 over the size limit, 507 when the quarantine is full) and from BentoML for
  any 5xx (its fixed message: the reason is in the server's log);
- `{"error": "...", "detail": [{"loc": [...], "msg": "...", ...}]}` when BentoML's request model refuses a
  field (a validator of `schemas`, a missing field, a label that is not an integer);
- `[{"error": "..."}]`, a list of one, when the API itself raises a 4xx (a BadInput, the 429 of a quota):
  BentoML 1.4 wraps those in a list.

`complete_document` declares, for each API, the statuses it answers with those shapes, and that a form
takes no fields besides its own (`FileFieldsOnly` refuses the others). BentoML has no hook for its document
(it is a property of the service, rebuilt per request), so `OpenAPIDocument`, an ASGI middleware, answers
`GET /docs.json` in its place with BentoML's document completed, built once.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

DOCUMENT_PATH = "/docs.json"
REF = "#/components/schemas/{}"

SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {
        "type": "object",
        "title": "Error",
        "description": "The service's own answer to a request it refuses, and BentoML's to any 5xx.",
        "required": ["error"],
        "properties": {"error": {"type": "string", "title": "Message"}},
    },
    "FieldErrors": {
        "type": "object",
        "title": "FieldErrors",
        "description": "A request model's validation errors, one per field that was refused.",
        "required": ["error", "detail"],
        "properties": {
            "error": {"type": "string", "title": "Message"},
            "detail": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["type", "loc", "msg"],
                    "properties": {
                        "type": {"type": "string"},
                        "loc": {
                            "type": "array",
                            "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                        },
                        "msg": {"type": "string"},
                        "url": {"type": "string"},
                    },
                },
            },
        },
    },
    "RaisedError": {
        "type": "array",
        "title": "RaisedError",
        "description": "An error the API raised, as BentoML answers it: a list of one.",
        "minItems": 1,
        "maxItems": 1,
        "items": {"$ref": REF.format("Error")},
    },
}

_ERROR = {"$ref": REF.format("Error")}
_RAISED = {"$ref": REF.format("RaisedError")}
_ANY_ERROR = {"anyOf": [{"$ref": REF.format("FieldErrors")}, _ERROR, _RAISED]}

# status -> (what it means, the body's schema), for every API that takes files
_COMMON = {
    HTTPStatus.BAD_REQUEST: ("The request or a file in it was refused; the message says why.", _ANY_ERROR),
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: ("The body is over the service's size limit.", _ERROR),
    HTTPStatus.INTERNAL_SERVER_ERROR: ("An unexpected error (the server's log has it).", _ERROR),
}
# The statuses each API answers besides those
ERRORS: dict[str, dict[HTTPStatus, tuple[str, dict[str, Any]]]] = {
    "/classify": {
        HTTPStatus.SERVICE_UNAVAILABLE: ("Overloaded: the model's queue is full; retry later.", _ERROR),
    },
    "/read": {},
    "/feedback": {
        HTTPStatus.UNAUTHORIZED: ("A contribution token is required (Authorization: Bearer ...).", _ERROR),
        HTTPStatus.FORBIDDEN: ("This client may not contribute (serve.feedback).", _ERROR),
        HTTPStatus.TOO_MANY_REQUESTS: ("The client's daily quota of drawings is spent.", _RAISED),
        HTTPStatus.INSUFFICIENT_STORAGE: ("The quarantine is full until drawings are reviewed.", _ERROR),
    },
}


def complete_document(document: Mapping[str, Any]) -> dict[str, Any]:
    """BentoML's OpenAPI document (a dict) -> a copy that declares each API's error answers and closed forms.

    Raises KeyError naming an API of `ERRORS` that the document lacks (a renamed route must be renamed here).
    """
    # A deep copy with JSON's keys: BentoML's response statuses are ints until the document is serialised.
    completed = json.loads(json.dumps(document))
    completed.setdefault("components", {}).setdefault("schemas", {}).update(copy.deepcopy(SCHEMAS))
    for route, errors in ERRORS.items():
        if route not in completed["paths"]:
            raise KeyError(f"the OpenAPI document has no {route}: update digitops.serve.openapi.ERRORS")
        operation = completed["paths"][route]["post"]
        operation["responses"] = {
            str(HTTPStatus.OK.value): operation["responses"][str(HTTPStatus.OK.value)],
            **{
                str(status.value): {
                    "description": description,
                    "content": {"application/json": {"schema": schema}},
                }
                for status, (description, schema) in sorted({**_COMMON, **errors}.items())
            },
        }
        for media in operation.get("requestBody", {}).get("content", {}).values():
            if media.get("schema", {}).get("type") == "object":
                media["schema"]["additionalProperties"] = False
    return completed


class OpenAPIDocument:
    """ASGI middleware: `GET /docs.json` (and HEAD) answers `complete_document(document())`, built once."""

    def __init__(self, app, document: Callable[[], Mapping[str, Any]]) -> None:
        self.app = app
        self.document = document  # BentoML's document, as a dict
        self._body: bytes | None = None

    async def __call__(self, scope, receive, send) -> None:
        method = scope.get("method")
        if scope["type"] != "http" or scope.get("path") != DOCUMENT_PATH or method not in ("GET", "HEAD"):
            return await self.app(scope, receive, send)
        if self._body is None:
            self._body = json.dumps(complete_document(self.document())).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(self._body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": self._body if method == "GET" else b""})
