"""The client's websocket: receiving frames, sending server events one at a time, closing.

It is the one place that knows how the ASGI server says a socket is gone (a disconnect message,
`WebSocketDisconnect`, or a `RuntimeError` on a send after the close); the rest of the connection
sees a single `ClientGone`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from starlette.websockets import WebSocket, WebSocketDisconnect

from shared.errors import error_info
from shared.messages import ErrorDetail, ErrorEvent, ServerEvent
from shared.metrics import ERRORS


class ClientGone(Exception):
    """The client's socket is closed: nothing more can be sent to it."""


@dataclass(frozen=True)
class Frame:
    """One websocket message: JSON text, or bytes (which the protocol refuses)."""

    text: str | None
    data: bytes | None


class ClientSocket:
    def __init__(self, ws: WebSocket) -> None:
        self._ws = ws
        # Responses and worker events stream while client events are answered: one send at a time.
        self._send_lock = asyncio.Lock()

    async def receive(self) -> Frame:
        """The next frame; ClientGone once the client has left."""
        try:
            message = await self._ws.receive()
        except (WebSocketDisconnect, RuntimeError) as exc:  # RuntimeError: a receive after the close
            raise ClientGone from exc
        if message["type"] == "websocket.disconnect":
            raise ClientGone
        return Frame(message.get("text"), message.get("bytes"))

    async def send(self, event: ServerEvent) -> None:
        """Send one event; ClientGone when the socket is closed (by the client, or by uvicorn under
        a frame too large), however the ASGI server says so."""
        async with self._send_lock:
            try:
                await self._ws.send_text(event.model_dump_json())
            except (WebSocketDisconnect, RuntimeError) as exc:  # RuntimeError: a send after the close
                raise ClientGone from exc

    async def send_error(self, exc: BaseException, event_id: str | None) -> None:
        """Tell the client what went wrong, as the project's errors say (unexpected ones are logged)."""
        info = error_info(exc)
        ERRORS.labels(info.code).inc()
        detail = ErrorDetail(type=info.type, code=info.code, message=info.message, param=info.param, event_id=event_id)
        await self.send(ErrorEvent(error=detail))

    async def close(self, code: int) -> None:
        try:
            await self._ws.close(code=code)
        except (WebSocketDisconnect, RuntimeError) as exc:
            raise ClientGone from exc
