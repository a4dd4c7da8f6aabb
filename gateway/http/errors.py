"""One error shape for every HTTP route: `{"error": {message, type, param, code}}` (the OpenAI object).

The status and code come from `shared.errors.error_info`; 5xx messages are generic and the detail
goes to the log. `documented(...)` puts the same shape in the OpenAPI document for the statuses a
route answers with, so the document says what clients really get (and the HTTP fuzz test holds the
routes to it).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from shared.errors import ErrorCode, ErrorInfo, ErrorType, MMStreamError, error_info
from shared.metrics import ERRORS


class ErrorObject(BaseModel):
    message: str
    type: ErrorType
    param: str | None
    code: ErrorCode | None


class ErrorResponse(BaseModel):
    """The body of every HTTP error (OpenAI's error object)."""

    error: ErrorObject


_WHY = {
    400: "The request is invalid (`param` names the field).",
    401: "Missing or incorrect API key.",
    404: "No such model, file or batch (for this key).",
    413: "The request, or a picture or recording in it, is too large.",
    429: "The key's budget is spent; `retry-after` says when to come back.",
    503: "No worker of the kind needed is running, or none answered in time.",
}


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the errors a route answers with, all in the one error shape."""
    return {status: {"model": ErrorResponse, "description": _WHY[status]} for status in statuses}


def error_body(info: ErrorInfo) -> dict[str, Any]:
    ERRORS.labels(info.code).inc()
    return {"error": {"message": info.message, "type": info.type, "param": info.param, "code": info.code}}


def error_response(info: ErrorInfo) -> JSONResponse:
    return JSONResponse(error_body(info), status_code=info.status)


async def _on_exception(_request: Request, exc: Exception) -> JSONResponse:
    return error_response(error_info(exc))


async def _on_validation(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request", "type": "value_error"}
    param = ".".join(str(p) for p in first["loc"] if p not in ("body", "query", "path")) or None
    code: ErrorCode = "missing_required_parameter" if first["type"] == "missing" else "invalid_value"
    if param is None:  # the body as a whole: missing, or not an object
        missing = code == "missing_required_parameter"
        message = "The request body is missing." if missing else f"Invalid request body: {first['msg']}."
    elif code == "missing_required_parameter":
        message = f"Missing required parameter: '{param}'."
    else:
        message = f"Invalid value for '{param}': {first['msg']}."
    return error_response(ErrorInfo("invalid_request_error", code, message, param, 400))


async def _on_http(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    kind = "server_error" if exc.status_code >= 500 else "invalid_request_error"
    detail = str(exc.detail) if exc.status_code < 500 else "The server had an error."
    return JSONResponse(
        {"error": {"message": detail, "type": kind, "param": None, "code": None}},
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(HTTPException, _on_http)
    # Our own errors are answers, not crashes: handled inside the app like HTTPException. Only the
    # handler for Exception runs in Starlette's outermost middleware, which re-raises after it.
    app.add_exception_handler(MMStreamError, _on_exception)
    app.add_exception_handler(Exception, _on_exception)
