"""ASGI middleware that the service puts in front of its routes."""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.lowlevel
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from digitops.data.drawings import stored_bytes
from digitops.serve.contributors import NotAllowedError


class RequestSizeLimit:
    """ASGI middleware: a request body over `max_bytes` gets a 413 before the application reads it.

    A declared Content-Length over the limit is refused at once; a body sent without one (chunked) is
    counted as it streams in and cut off at the limit. Nothing is buffered here.
    """

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(send, f"the request has {int(declared):,} bytes")
        received = 0

        def count(chunk: bytes) -> str | None:
            nonlocal received
            received += len(chunk)
            return "the request body is too large" if received > self.max_bytes else None

        refusal = await _run_checking_body(self.app, scope, receive, send, count)
        if refusal is not None:
            await self._refuse(send, refusal)

    async def _refuse(self, send, what: str) -> None:
        await _answer(send, 413, f"{what}; the limit is {self.max_bytes:,} bytes")


@dataclass(frozen=True)
class FormFields:
    """An API's multipart fields: those that take uploaded files, and those that take text."""

    files: frozenset[str]
    texts: frozenset[str]


class FileFieldsOnly:
    """ASGI middleware: a file field takes uploaded files only, so the service never fetches a URL.

    BentoML downloads a URL that it finds where a file is expected: a text part of a multipart file field
    (`images=http://...`), any field of a urlencoded form, or a whole non-multipart body that parses as a
    URL. Before BentoML parses the body of a route in `routes`, this answers 400 to each of these:

    - multipart/form-data: a part without a filename, unless it is one of the API's text fields; a part,
      file or text, that names no field of the API or has no name at all; a body without a boundary;
    - application/x-www-form-urlencoded: always (it cannot carry a file);
    - any other media type (BentoML parses it as JSON): a body that is not empty or a JSON object.

    The body streams through: each chunk is checked before the application sees it, so BentoML never has
    the whole form of a refused request, and nothing is buffered. A refusal cancels the application (a
    cancellation, not an error: nothing is logged as a server error) and answers in its place.
    """

    def __init__(self, app, routes: Mapping[str, FormFields]) -> None:
        self.app = app
        self.routes = dict(routes)

    async def __call__(self, scope, receive, send) -> None:
        form = self.routes.get(scope.get("path", "")) if scope["type"] == "http" else None
        if form is None or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        check = _body_check(scope, form)
        # A refusal before any byte of the body (a multipart type without a boundary, on which Starlette's
        # form parser fails with a 500 before it reads the body): answered without running the application.
        refusal = check(b"") or await _run_checking_body(self.app, scope, receive, send, check)
        if refusal is not None:
            await _answer(send, 400, f"{scope['path']}: {refusal}")


async def _run_checking_body(app, scope, receive, send, check: Callable[[bytes], str | None]) -> str | None:
    """Run `app` with each request body chunk given to `check` before the application sees it.

    The first chunk `check` refuses (it returns a reason, not None) cancels the application: a
    cancellation, not an error raised into it, which BentoML would answer with a 500 and log. Returns the
    reason when the application was cancelled before it began a response (the caller answers in its
    place), else None.
    """
    refusal: str | None = None
    response_started = False

    async def checking_receive():
        nonlocal refusal
        message = await receive()
        if message["type"] == "http.request" and refusal is None:
            refusal = check(message.get("body", b""))
            if refusal is not None:
                cancel_scope.cancel()
                await anyio.lowlevel.checkpoint()  # the cancellation is raised here, in the application
        return message

    async def tracking_send(message):
        nonlocal response_started
        response_started = response_started or message["type"] == "http.response.start"
        await send(message)

    with anyio.CancelScope() as cancel_scope:
        await app(scope, checking_receive, tracking_send)
    return None if response_started else refusal


def _body_check(scope, form: FormFields):
    """A function of each body chunk that returns why the request is refused, or None while it is not."""
    # The media type and the first Content-Type header, as BentoML and Starlette pick them.
    content_type = next(
        (value.decode("latin-1") for name, value in scope.get("headers") or [] if name == b"content-type"),
        "application/json",
    )
    media_type = content_type.split(";")[0].strip()
    if media_type == "multipart/form-data":
        return _MultipartCheck(content_type, form)
    if media_type == "application/x-www-form-urlencoded":
        return lambda _chunk: "a urlencoded form cannot carry files: send multipart/form-data"
    return _JSONObjectCheck()


class _JSONObjectCheck:
    """Refuses a body that is neither empty nor a JSON object, from its first byte that is not whitespace.

    BentoML fetches a body that parses as an http(s) URL; a body that starts with `{` cannot be one.
    """

    def __init__(self) -> None:
        self.decided = False

    def __call__(self, chunk: bytes) -> str | None:
        if self.decided:
            return None
        rest = chunk.lstrip(b" \t\r\n")
        if not rest:
            return None
        self.decided = True
        if rest[:1] != b"{":
            return "send the files as multipart/form-data (or a JSON object); the service fetches no URLs"
        return None


class _MultipartCheck:
    """Follows a multipart body as it streams and names the first part that may not pass.

    A part's field name is decoded as Starlette decodes it (the form's charset, else latin-1), so that
    the name checked here is the name BentoML acts on.
    """

    def __init__(self, content_type: str, form: FormFields) -> None:
        self.form = form
        self.refusal: str | None = None
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        _, options = parse_options_header(content_type)
        charset = options.get(b"charset", b"utf-8").decode("latin-1")
        try:
            self._charset = codecs.lookup(charset).name
        except LookupError:
            self._charset = "latin-1"
        boundary = options.get(b"boundary")
        self._parser = None
        if not boundary:
            self.refusal = "the multipart body has no boundary"
            return
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._on_part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
            },
        )

    def __call__(self, chunk: bytes) -> str | None:
        if self.refusal is None and chunk:
            try:
                self._parser.write(chunk)
            except FormParserError as error:
                self.refusal = f"the multipart body is malformed ({error})"
        return self.refusal

    def _on_part_begin(self) -> None:
        self._disposition = b""

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value  # the last one counts, as in Starlette
        self._header_name = self._header_value = b""

    def _on_headers_finished(self) -> None:
        if self.refusal is not None:
            return
        _, options = parse_options_header(self._disposition)
        if b"name" not in options:
            self.refusal = "a multipart part has no name (Content-Disposition: form-data; name=...)"
            return
        name = _decode(options[b"name"], self._charset)
        if name in self.form.texts or (name in self.form.files and b"filename" in options):
            return
        if name in self.form.files:
            self.refusal = (
                f"the part '{name}' is text, not a file: '{name}' takes uploaded files (multipart parts "
                "with a filename); the service fetches no URLs"
            )
        else:
            fields = ", ".join(sorted(self.form.files | self.form.texts))
            self.refusal = f"'{name}' is not a field of this API (its fields: {fields})"


class ContributorGate:
    """ASGI middleware for the contribution route: who may contribute, and whether there is room, answered
    before the upload is read.

    A client the policy refuses gets 401 or 403 with the reason (BentoML's own error handling would
    replace it with "Authorization error"); when the quarantine already holds `max_bytes` of drawings,
    507 with the reason (the store checks again, exactly, under its lock).
    """

    def __init__(self, app, route: str, policy, quarantine: Path, max_bytes: int) -> None:
        self.app = app
        self.route = route
        self.policy = policy  # digitops.serve.contributors.ContributionPolicy
        self.quarantine = quarantine
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] != self.route:
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        client = scope.get("client")
        try:
            self.policy.contributor(
                headers.get(b"authorization", b"").decode("latin-1"), client[0] if client else None
            )
        except NotAllowedError as error:
            return await _answer(send, int(error.status), str(error))
        stored = await anyio.to_thread.run_sync(stored_bytes, self.quarantine)
        if stored >= self.max_bytes:
            return await _answer(
                send,
                507,
                f"the feedback folder holds {stored:,} bytes of drawings; its cap is {self.max_bytes:,}: "
                "contributions are paused until they are reviewed",
            )
        return await self.app(scope, receive, send)


def _decode(raw: bytes, charset: str) -> str:
    """A part's field name, decoded as Starlette's multipart parser decodes it."""
    try:
        return raw.decode(charset)
    except (UnicodeDecodeError, LookupError):
        return raw.decode("latin-1")


async def _answer(send, status: int, error: str) -> None:
    """Sends a JSON response `{"error": ...}` with `status`."""
    body = json.dumps({"error": error}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
