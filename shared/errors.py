"""The project's exceptions and the one function that turns any exception into a client error.

Nothing parses exception text: the class decides the code. Server-side failures (5xx) get a
generic message for the client; the detail goes to the log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from pydantic import ValidationError

log = logging.getLogger(__name__)

ErrorType = Literal["invalid_request_error", "server_error"]
# Every code the project puts on the wire or in a stream entry; `_STATUS` gives each its HTTP status.
ErrorCode = Literal[
    # A client event or HTTP request the service refuses.
    "invalid_json",
    "unknown_event",
    "missing_required_parameter",
    "invalid_value",
    "message_too_large",
    "model_not_found",
    "item_not_found",
    "conversation_already_has_active_response",
    "response_cancel_not_active",
    "conversation_full",
    "invalid_audio",
    "audio_too_long",
    "input_audio_buffer_commit_empty",
    "request_too_large",
    "invalid_image",
    "image_too_large",
    "invalid_api_key",
    "rate_limit_exceeded",
    # A job that could not be done: no worker runs or took it in time, the generation ran past its
    # time limit, or Redis went away mid-reply.
    "audio_unavailable",
    "decoder_unavailable",
    "speech_unavailable",
    "media_unavailable",
    "timeout",
    "redis_unavailable",
    # A batch as a whole (its input file) and its lines (OpenAI's batch error codes).
    "empty_file",
    "too_many_requests",
    "file_not_found",
    "missing_custom_id",
    "duplicate_custom_id",
    "invalid_method",
    "invalid_url",
    "invalid_body",
    "batch_expired",
    "batch_cancelled",
    "server_error",
]


class MMStreamError(Exception):
    """Base of every error the project raises on purpose."""

    type: ErrorType = "server_error"
    code: ErrorCode = "server_error"
    status: int = 500

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class InvalidRequest(MMStreamError):
    type = "invalid_request_error"
    code: ErrorCode = "invalid_value"
    status = 400

    def __init__(self, message: str, *, code: ErrorCode = "invalid_value", param: str | None = None) -> None:
        super().__init__(message, param=param)
        self.code = code


class ModelError(MMStreamError):
    """A model could not be found, assembled or verified."""


class DecoderUnavailable(MMStreamError):
    code = "decoder_unavailable"
    status = 503


class NotFound(InvalidRequest):
    status = 404


class TooLarge(InvalidRequest):
    status = 413


class RateLimited(InvalidRequest):
    """A per-key budget is spent (see `gateway.quotas`)."""

    status = 429

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message, code="rate_limit_exceeded")
        self.retry_after_s = retry_after_s


# The HTTP status of each code: what a job (chat completion, transcription) that ended failed with
# it answers (`error_code` of its final event), and what a refusal with it means. An exception keeps
# its own `status` (a `NotFound` with code "invalid_value" is a 404), so this table does not decide it.
_STATUS: dict[ErrorCode, int] = {
    "invalid_json": 400,
    "unknown_event": 400,
    "missing_required_parameter": 400,
    "invalid_value": 400,
    "message_too_large": 400,
    "model_not_found": 404,
    "item_not_found": 400,
    "conversation_already_has_active_response": 400,
    "response_cancel_not_active": 400,
    "conversation_full": 400,
    "invalid_audio": 400,
    "audio_too_long": 400,
    "input_audio_buffer_commit_empty": 400,
    "request_too_large": 413,
    "invalid_image": 400,
    "image_too_large": 400,
    "invalid_api_key": 401,
    "rate_limit_exceeded": 429,
    "audio_unavailable": 503,
    "decoder_unavailable": 503,
    "speech_unavailable": 503,
    "media_unavailable": 503,
    "timeout": 503,
    "redis_unavailable": 503,
    "empty_file": 400,
    "too_many_requests": 400,
    "file_not_found": 404,
    "missing_custom_id": 400,
    "duplicate_custom_id": 400,
    "invalid_method": 400,
    "invalid_url": 400,
    "invalid_body": 400,
    # The line never ran; like a request cancelled before it ended (gateway.batch.execute).
    "batch_expired": 503,
    "batch_cancelled": 503,
    "server_error": 500,
}


def status_for(code: ErrorCode) -> int:
    """The HTTP status for this code, e.g. of a job that ended failed with it."""
    return _STATUS.get(code, 500)


# What a client is told when Redis goes away while its reply streams (replies travel through Redis).
REDIS_LOST = "The service lost its connection to Redis during the reply; try again in a moment."


@dataclass(frozen=True)
class ErrorInfo:
    type: ErrorType
    code: ErrorCode
    message: str
    param: str | None = None
    status: int = 500


def job_error(code: ErrorCode | None, message: str | None, default: str, param: str | None = None) -> ErrorInfo:
    """What a client is told of a job that ended failed (its final event's code and message)."""
    code = code or "server_error"
    status = status_for(code)
    kind: ErrorType = "invalid_request_error" if status < 500 else "server_error"
    return ErrorInfo(kind, code, message or default, param, status)


def error_info(exc: BaseException) -> ErrorInfo:
    """Map an exception to what a client is told. Unexpected exceptions are logged, not echoed."""
    if isinstance(exc, ValidationError):
        return _from_validation_error(exc)
    if isinstance(exc, InvalidRequest):
        return ErrorInfo(exc.type, exc.code, exc.message, exc.param, exc.status)
    if isinstance(exc, MMStreamError) and exc.status < 500:
        return ErrorInfo(exc.type, exc.code, exc.message, exc.param, exc.status)
    if isinstance(exc, DecoderUnavailable):  # a 503 whose message is meant for the client
        return ErrorInfo(exc.type, exc.code, exc.message, None, exc.status)
    log.error("internal error", exc_info=exc)
    return ErrorInfo("server_error", "server_error", "The server had an error; it has been logged.")


def _from_validation_error(exc: ValidationError) -> ErrorInfo:
    first = exc.errors(include_url=False, include_input=False)[0]
    loc = [str(part) for part in first["loc"]]
    # A discriminated union puts the tag it chose in loc; it says nothing to the client.
    param = ".".join(p for p in loc if not p.startswith("function-") and "." not in p) or None
    if first["type"] == "missing":
        return ErrorInfo(
            "invalid_request_error", "missing_required_parameter", f"Missing required parameter: '{param}'.", param, 400
        )
    return ErrorInfo(
        "invalid_request_error", "invalid_value", f"Invalid value for '{param}': {first['msg']}.", param, 400
    )
