"""What the service's `@bentoml.api` methods take and answer: upload validators and response schemas.

The validators replace BentoML's own image decoding (which answers unreadable bytes with a 500): they raise
`BadInputError`, a ValueError, which pydantic turns into a validation error and BentoML into a 400 with its
message. They take an uploaded file's bytes only, without decoding them: the API methods decode them off
the event loop, a few at a time (`digitops.serve.decoding`), before any digit reaches the batcher, so a bad
file never fails a batch it would have shared with other requests.
"""

from __future__ import annotations

from typing import Annotated, Any

from PIL import Image
from pydantic import BaseModel, Field, StrictInt, WrapValidator

from digitops.infer.inputs import BadInputError, check_count
from digitops.serve.settings import LIMITS

# The responses' media type, declared on each API so that BentoML does not rebuild the output's JSON schema
# for every response to find it (docs/benchmarks.md).
JSON = "application/json"


def _image_list(value: Any, handler: Any) -> list[Image.Image]:
    """Checks the count before any file is read, then reads each file."""
    if isinstance(value, list):
        check_count(len(value), LIMITS)
    return handler(value)


def _upload_bytes(value: Any, _handler: Any) -> bytes | Image.Image:
    """An uploaded file's bytes, undecoded, read to one byte past the limit (`open_image` refuses more); an
    image that a Python caller passed stays as it is (its size is checked where it is used)."""
    if isinstance(value, bytes | Image.Image):
        return value
    if hasattr(value, "file"):  # an uploaded file (starlette UploadFile)
        value.file.seek(0)
        return value.file.read(LIMITS.max_bytes + 1)
    raise BadInputError("expected an image file (multipart upload)")


# What the OpenAPI document says of a list of uploads (BentoML builds it from these annotations): the counts
# `check_count` enforces. Written as schema only, so that the validators' own messages stay the answers.
_IMAGE_COUNT = Field(json_schema_extra={"minItems": 1, "maxItems": LIMITS.max_images})

# An image file in the API's schema; its undecoded bytes in the method (`digitops.serve.decoding` decodes).
UploadedFile = Annotated[Image.Image, WrapValidator(_upload_bytes)]
Photo = UploadedFile
DigitImages = Annotated[list[UploadedFile], _IMAGE_COUNT, WrapValidator(_image_list)]
UploadedFiles = DigitImages
# Feedback labels, one per image: the range is checked (with its message) where the drawings are stored.
Labels = Annotated[
    list[Annotated[StrictInt, Field(json_schema_extra={"minimum": 0, "maximum": 9})]], _IMAGE_COUNT
]


class Prediction(BaseModel):
    digit: int  # 0-9
    confidence: float  # the probability of `digit`
    probabilities: list[float]  # one per class, indexed by digit
    model_version: str  # registered model and version, e.g. "digits/3"


class ReadDigitOut(BaseModel):
    digit: int
    confidence: float
    box: tuple[int, int, int, int]  # x, y, width, height in the photo's pixels


class ReadSeparatorOut(BaseModel):
    mark: str  # '.', ',', '-', '=' or '/': written between or after the digits, not part of `text`
    confidence: float
    box: tuple[int, int, int, int]  # (x, y, width, height) in the photo's pixels


class Reading(BaseModel):
    text: str  # the digits in reading order, lines separated by a newline ("" when none were found)
    digits: list[ReadDigitOut]
    model_version: str
    # The chance the whole text is right (digitops.infer.segment.ReadResult); 0.0 when none were found.
    # With defaults, so that an answer without these (an older service) still parses.
    confidence: float = 0.0
    separators: list[ReadSeparatorOut] = []  # read by the string reader, when the model has one


class StoredFeedback(BaseModel):
    sha256: str  # the stored PNG's content hash (its file name in the feedback folder)
    label: int
    duplicate: bool  # already in the folder with this label: stored once


class FeedbackReceipt(BaseModel):
    stored: list[StoredFeedback]
