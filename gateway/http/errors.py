"""One error shape for every HTTP route: `{"error": {message, type, param, code}}` (the OpenAI object).

The status and code come from `shared.errors.error_info`; 5xx messages are generic and the detail
goes to the log.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from shared.errors import ErrorCode, ErrorInfo, MMStreamError, error_info
from shared.metrics import ERRORS


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
    message = (
        f"Missing required parameter: '{param}'."
        if code == "missing_required_parameter"
        else (f"Invalid value for '{param}': {first['msg']}.")
    )
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
