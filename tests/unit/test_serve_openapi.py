"""The OpenAPI document: what BentoML generates from the upload types, and what `digitops.serve.openapi` adds.

A service with the real service's API signatures (the real one needs a packaged model) gives BentoML's own
document; the served document is checked over HTTP by schemathesis in tests/service/test_reliability.py.
"""

from __future__ import annotations

import json

import anyio
import bentoml
import pytest

from digitops.serve.openapi import DOCUMENT_PATH, ERRORS, OpenAPIDocument, complete_document
from digitops.serve.schemas import (
    DigitImages,
    FeedbackReceipt,
    Labels,
    Photo,
    Prediction,
    Reading,
    UploadedFiles,
)
from digitops.serve.settings import LIMITS


@bentoml.service
class SameSignatures:
    @bentoml.api
    def classify(self, images: DigitImages) -> list[Prediction]:
        raise NotImplementedError

    @bentoml.api
    def read(self, image: Photo) -> Reading:
        raise NotImplementedError

    @bentoml.api
    def feedback(self, images: UploadedFiles, labels: Labels) -> FeedbackReceipt:
        raise NotImplementedError


def _form(document: dict, route: str) -> dict:
    return document["paths"][route]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]


@pytest.fixture(scope="module")
def bentoml_document() -> dict:
    return SameSignatures.openapi_spec.asdict()


def test_bentoml_marks_the_fields_required_with_their_counts_and_ranges(bentoml_document):
    document = json.loads(json.dumps(bentoml_document))
    assert _form(document, "/classify")["required"] == ["images"]
    assert _form(document, "/read")["required"] == ["image"]
    feedback = _form(document, "/feedback")
    assert sorted(feedback["required"]) == ["images", "labels"]
    for field in (_form(document, "/classify")["properties"]["images"], *feedback["properties"].values()):
        assert (field["minItems"], field["maxItems"]) == (1, LIMITS.max_images)
    labels = feedback["properties"]["labels"]["items"]
    assert (labels["type"], labels["minimum"], labels["maximum"]) == ("integer", 0, 9)


def test_each_api_declares_the_errors_it_answers_with_their_bodies(bentoml_document):
    document = complete_document(bentoml_document)
    expected = {
        "/classify": {"200", "400", "413", "500", "503"},
        "/read": {"200", "400", "413", "500"},
        "/feedback": {"200", "400", "401", "403", "413", "429", "500", "507"},
    }
    for route, statuses in expected.items():
        responses = document["paths"][route]["post"]["responses"]
        assert set(responses) == statuses, route
        assert _form(document, route)["additionalProperties"] is False
        # BentoML's 400 says `detail` is a string; its validation errors send a list
        schema = responses["400"]["content"]["application/json"]["schema"]
        assert {"$ref": "#/components/schemas/FieldErrors"} in schema["anyOf"]
    assert document["paths"]["/feedback"]["post"]["responses"]["429"]["content"]["application/json"][
        "schema"
    ] == {"$ref": "#/components/schemas/RaisedError"}
    schemas = document["components"]["schemas"]
    assert schemas["FieldErrors"]["properties"]["detail"]["type"] == "array"
    assert schemas["RaisedError"]["items"] == {"$ref": "#/components/schemas/Error"}
    assert bentoml_document["paths"]["/read"]["post"]["responses"].keys() == {200, 400, 404, 500}  # untouched


def test_a_document_without_an_api_it_describes_is_an_error(bentoml_document):
    document = json.loads(json.dumps(bentoml_document))
    del document["paths"]["/read"]
    with pytest.raises(KeyError, match="no /read"):
        complete_document(document)
    assert set(ERRORS) == {"/classify", "/read", "/feedback"}


def test_the_middleware_answers_the_document_and_passes_everything_else(bentoml_document):
    passed = []

    async def app(scope, receive, send) -> None:
        passed.append(scope["path"])

    middleware = OpenAPIDocument(app, document=lambda: bentoml_document)

    async def call(method: str, path: str) -> list[dict]:
        sent = []

        async def send(message) -> None:
            sent.append(message)

        async def receive() -> dict:
            return {"type": "http.request", "body": b""}

        await middleware({"type": "http", "method": method, "path": path}, receive, send)
        return sent

    start, body = anyio.run(call, "GET", DOCUMENT_PATH)
    assert start["status"] == 200
    assert json.loads(body["body"]) == complete_document(bentoml_document)
    assert anyio.run(call, "HEAD", DOCUMENT_PATH)[1]["body"] == b""
    assert anyio.run(call, "POST", DOCUMENT_PATH) == []
    assert anyio.run(call, "GET", "/classify") == []
    assert passed == [DOCUMENT_PATH, "/classify"]
