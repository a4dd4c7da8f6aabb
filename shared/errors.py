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
ErrorCode = Literal[
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
    "audio_unavailable",
    "rate_limit_exceeded",
    "decoder_unavailable",
    "media_unavailable",
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


# The HTTP status of a failed job, by the code its final event carries; the rest are 500.
_FAILURE_STATUS: dict[str, int] = {
    "invalid_audio": 400,
    "invalid_image": 400,
    "audio_unavailable": 503,
    "decoder_unavailable": 503,
    "media_unavailable": 503,
    "timeout": 503,
    "redis_unavailable": 503,
}


def status_for(code: str | None) -> int:
    """The HTTP status for a job that ended failed with this code (`error_code` of its final event)."""
    return _FAILURE_STATUS.get(code or "server_error", 500)


# What a client is told when Redis goes away while its reply streams (replies travel through Redis).
REDIS_LOST = "The service lost its connection to Redis during the reply; try again in a moment."


@dataclass(frozen=True)
class ErrorInfo:
    type: ErrorType
    code: ErrorCode
    message: str
    param: str | None = None
    status: int = 500


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
