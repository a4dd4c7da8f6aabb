"""Run the gateway under uvicorn."""

from __future__ import annotations

import uvicorn

from gateway.app import create_app
from gateway.http_protocol import bounded_http_protocol
from shared.config import Settings


def serve_gateway(settings: Settings) -> None:
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        # uvicorn's own protocol waits for ever for headers and takes any amount of them.
        http=bounded_http_protocol(settings.http_header_timeout_s, settings.max_http_header_bytes),
        # Frames up to 4x our limit reach the app, which answers them with an error event;
        # beyond that uvicorn closes the socket (1009) without buffering more.
        ws_max_size=settings.max_ws_message_bytes * 4,
        log_level=settings.log_level.lower(),
        # Sockets still open at shutdown are closed after this long rather than waited for.
        timeout_graceful_shutdown=10,
        access_log=False,
    )
