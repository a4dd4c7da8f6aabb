"""The gateway's ASGI app: `create_app(settings)` builds it; nothing happens at import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from gateway import health
from gateway.http import chat, errors, transcriptions
from gateway.http.limits import BodySizeLimit
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
    errors.install(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes + (64 << 10))
    app.include_router(health.router)
    app.include_router(realtime.router)
    app.include_router(transcriptions.router)
    app.include_router(chat.router)
    return app
