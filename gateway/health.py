"""Liveness and readiness.

`/healthz` answers while the process runs. `/readyz` answers 200 only when Redis answers and every
worker kind has a live worker with its model loaded; otherwise 503 with the reasons, among them why
the last worker of a kind could not start or died. Each worker's record says what it loaded (for
the decoder: the model and llama.cpp's CPU variant).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from redis.exceptions import RedisError

from gateway.services import Services
from shared.config import WORKER_KINDS
from shared.worker_presence import live_workers, recent_failures

router = APIRouter()


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    reasons: list[str]
    workers: dict[str, list[dict[str, Any]]]


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={200: {"model": Readiness}, 503: {"model": Readiness, "description": "Not ready: `reasons` says why."}},
)
async def readyz(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    reasons: list[str] = []
    workers: dict[str, list[dict[str, Any]]] = {}
    try:
        await services.redis.ping()
        for kind in WORKER_KINDS:
            workers[kind] = await live_workers(services.redis, services.keys, kind)
            if not any(w.get("loaded") for w in workers[kind]):
                state = "none is running" if not workers[kind] else "its model is still loading"
                if failures := await recent_failures(services.redis, services.keys, kind):
                    state += f"; {failures[0]['name']} {failures[0]['reason']}"
                reasons.append(f"no {kind} worker is ready: {state}")
    except RedisError:
        reasons.append("redis is unreachable")
    body = {"status": "not_ready" if reasons else "ready", "reasons": reasons, "workers": workers}
    return JSONResponse(body, status_code=503 if reasons else 200)
