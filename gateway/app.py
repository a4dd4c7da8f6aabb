"""The gateway's ASGI app: `create_app(settings)` builds it; nothing happens at import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from gateway import health
from gateway.realtime import router as realtime
from gateway.services import Services
from shared.config import Settings


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.services = Services.build(settings)
        try:
            yield
        finally:
            await app.state.services.close()

    app = FastAPI(title="mmstream", version="0.1.0", lifespan=lifespan)
    app.include_router(health.router)
    app.include_router(realtime.router)
    return app
