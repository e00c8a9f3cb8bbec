"""Reading the recording out of a POST /v1/predict request, exactly as the API's schema declares it.

The schema (`schemas.PredictUpload`, and `RAW_BODY_MEDIA_TYPES`) allows two bodies:

- `multipart/form-data` with one field, `file`, holding the recording's bytes. The field is an
  upload whether or not its part carries a file name (`Content-Disposition: form-data;
  name="file"` alone is a valid binary field), so its bytes are never decoded as text, and a
  path sent in it is only bytes that are not audio: the server never reads a file it is named.
  A form without `file`, with it twice, or with any other field gets 422 naming the field.
- the recording as the raw body, typed `application/octet-stream`, `audio/*` or `video/*` (or
  untyped, which HTTP reads as `application/octet-stream`).

Any other Content-Type gets 415, a malformed multipart body 400.
"""

from __future__ import annotations

from dataclasses import dataclass
from tempfile import SpooledTemporaryFile
from typing import BinaryIO

from fastapi import Request
from fastapi.exceptions import HTTPException, RequestValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from ser_lightning.serving.schemas import RAW_BODY_MEDIA_TYPES

FIELD = "file"
NO_FILE = (
    "no file: send the recording as the multipart field `file` (curl -F file=@clip.wav URL) or as the "
    "raw request body (curl --data-binary @clip.wav -H 'Content-Type: audio/wav' URL)"
)
# Parts beyond these make the body malformed for this API (400) before they are read.
MAX_PARTS = 8


class _FileFieldParser(MultiPartParser):
    """Starlette's multipart parser, reading the `file` field as an upload even without a file name."""

    def on_headers_finished(self) -> None:
        super().on_headers_finished()
        part = self._current_part
        if part.file is None and part.field_name == FIELD:
            self._current_fields -= 1
            self._current_files += 1
            spool = SpooledTemporaryFile(max_size=self.spool_max_size)
            self._files_to_close_on_error.append(spool)
            part.file = UploadFile(file=spool, size=0, filename=None)  # type: ignore[arg-type]


@dataclass
class Recording:
    """The recording of a request: its bytes (or a file holding them) and the client's name for it."""

    content: bytes | BinaryIO
    filename: str | None
    form: FormData | None = None

    async def close(self) -> None:
        """Delete the parsed form's temporary files (nothing for a raw body)."""
        if self.form is not None:
            await self.form.close()


def media_type(request: Request) -> str:
    """Name the request's media type: its Content-Type without parameters, lower-cased.

    Args:
        request: the request.

    Returns:
        E.g. "multipart/form-data"; "application/octet-stream" when the request names none.
    """
    value = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return value or "application/octet-stream"


def is_raw_body_type(value: str) -> bool:
    """Tell whether a media type may carry the recording as the raw body.

    Args:
        value: the media type, without parameters.

    Returns:
        Whether it matches one of `RAW_BODY_MEDIA_TYPES` (`audio/*` and `video/*` as ranges).
    """
    for allowed in RAW_BODY_MEDIA_TYPES:
        prefix, _, sub = allowed.partition("/")
        if value == allowed or (
            sub == "*" and value.startswith(prefix + "/") and len(value) > len(prefix) + 1
        ):
            return True
    return False


def _error(location: tuple[str, ...], message: str, kind: str = "missing") -> list[dict]:
    return [{"loc": location, "msg": message, "type": kind}]


async def read_recording(request: Request) -> Recording:
    """Read the recording of a POST /v1/predict request, as the schema declares it.

    Args:
        request: the request, its body not yet read.

    Returns:
        The recording: a file object for a multipart upload (close it with `Recording.close`),
        bytes for a raw body.

    Raises:
        HTTPException: 415 for a Content-Type the API does not take; 400 for a malformed
            multipart body.
        RequestValidationError: (422) for a form without the `file` field, with it twice or with
            another field, and for an empty raw body.
    """
    kind = media_type(request)
    if kind == "multipart/form-data":
        try:
            parser = _FileFieldParser(
                request.headers, request.stream(), max_files=MAX_PARTS, max_fields=MAX_PARTS
            )
            form = await parser.parse()
        except MultiPartException as err:
            raise HTTPException(400, f"the multipart body is malformed: {err.message}") from None
        recording = Recording(b"", None, form)
        others = sorted({name for name in form.keys() if name != FIELD})
        files = form.getlist(FIELD)
        try:
            if others:
                raise RequestValidationError(
                    [
                        {
                            "loc": ("body", name),
                            "msg": f"the form takes one field, `{FIELD}`; remove `{name}`",
                            "type": "extra_forbidden",
                        }
                        for name in others
                    ]
                )
            if not files:
                raise RequestValidationError(
                    _error(("body", FIELD), f"the form has no field `{FIELD}`; {NO_FILE}")
                )
            if len(files) > 1:
                raise RequestValidationError(
                    _error(
                        ("body", FIELD),
                        f"the form holds `{FIELD}` {len(files)} times; send one recording per request",
                        "too_many",
                    )
                )
        except RequestValidationError:
            await recording.close()
            raise
        upload = files[0]
        assert isinstance(upload, UploadFile)  # _FileFieldParser makes every `file` part an upload
        recording.content, recording.filename = upload.file, upload.filename
        return recording
    if not is_raw_body_type(kind):
        raise HTTPException(
            415,
            f"Content-Type {kind} is not taken here: send the recording as multipart/form-data (field `{FIELD}`) "
            f"or as the raw body typed {', '.join(RAW_BODY_MEDIA_TYPES)}",
        )
    body = await request.body()
    if not body:
        raise RequestValidationError(_error(("body",), NO_FILE))
    return Recording(body, None)
