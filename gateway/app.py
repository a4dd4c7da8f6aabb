"""The gateway's ASGI app: `create_app(settings)` builds it; nothing happens at import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from gateway import health, metrics, webpage
from gateway.auth import ApiKeyGuard, Keys
from gateway.batch.scheduler import BatchScheduler
from gateway.http import batches, chat, errors, files, openapi, speech, transcriptions
from gateway.http.limits import BodySizeLimit
from gateway.realtime import router as realtime
from gateway.services import Services
from shared.config import Settings


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = Services.build(settings)
        app.state.services = services
        app.state.batch_scheduler = BatchScheduler(services, services.batches, services.files)
        app.state.batch_scheduler.start()
        try:
            yield
        finally:
            await app.state.batch_scheduler.stop()
            await services.close()

    app = FastAPI(title="mmstream", version="0.1.0", lifespan=lifespan)
    errors.install(app)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_upload_bytes + (64 << 10),
        larger={"/v1/files": settings.max_batch_file_bytes + (64 << 10)},
    )
    # Added last, so it runs first: nothing is read before the caller is known.
    app.add_middleware(ApiKeyGuard, keys=Keys.from_settings(settings))
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(realtime.router)
    app.include_router(transcriptions.router)
    app.include_router(speech.router)
    app.include_router(chat.router)
    app.include_router(files.router)
    app.include_router(batches.router)
    webpage.install(app)
    openapi.install(app)
    return app
