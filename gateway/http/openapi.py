"""The OpenAPI document at `/openapi.json`, made to say what the routes really answer.

FastAPI documents a 422 for every route with parameters; ours never answers 422 (validation errors
are 400s in the one error shape, `gateway.http.errors`), so those entries go. The API key that
`gateway.auth.ApiKeyGuard` checks is declared as a bearer scheme on the `/v1` routes.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

SCHEME = "apiKey"


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, routes=app.routes)
            for path, operations in doc["paths"].items():
                for operation in operations.values():
                    operation["responses"].pop("422", None)
                    if path.startswith("/v1/"):
                        operation["security"] = [{SCHEME: []}]
            components = doc.setdefault("components", {})
            for unused in ("HTTPValidationError", "ValidationError"):
                components.get("schemas", {}).pop(unused, None)
            components["securitySchemes"] = {SCHEME: {"type": "http", "scheme": "bearer"}}
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
