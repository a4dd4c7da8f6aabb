"""One websocket's session from start to end: the parts put together, and what goes when it closes.

The parts, each in its module: the socket (`client_socket`), the client's events (`client_events`),
the relay of what the workers report (`worker_events`), and the responses (`runner`), sharing the
session in `state`. The session counts against its key's limit of open sessions while the socket
is open. When it closes, the relay stops, the running response is cancelled, and the session's keys
go with those of its ended responses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from starlette.websockets import WebSocket

from gateway.auth import owner_of
from gateway.realtime.audio_input import AudioInputBuffer
from gateway.realtime.client_events import ClientEvents
from gateway.realtime.client_socket import ClientGone, ClientSocket
from gateway.realtime.runner import ResponseRunner
from gateway.realtime.state import SessionState
from gateway.realtime.worker_events import WorkerEventRelay
from gateway.services import Services
from shared.errors import RateLimited
from shared.messages import Session, SessionCreated, new_id

log = logging.getLogger(__name__)


class RealtimeConnection:
    def __init__(self, ws: WebSocket, services: Services) -> None:
        s = services.settings
        self._services = services
        self._socket = ClientSocket(ws)
        session = Session(
            id=new_id("sess"),
            model=s.served_model_name,
            instructions=s.default_instructions,
            temperature=s.default_temperature,
            fusion=s.fusion_mode,
        )
        audio = AudioInputBuffer(
            services.audio, session.id, session.audio.input.format, max_seconds=s.max_audio_buffer_s
        )
        self._state = SessionState(owner=owner_of(ws.state), session=session, audio=audio)
        self._runner = ResponseRunner(services, self._socket, self._state)
        self._client_events = ClientEvents(services, self._socket, self._state, self._runner)
        self._relay = WorkerEventRelay(services, self._socket, self._state, self._runner)

    async def run(self) -> None:
        quotas, owner, sid = self._services.quotas, self._state.owner, self._state.session_id
        try:
            await quotas.open_session(owner, sid)
        except RateLimited as exc:
            with contextlib.suppress(ClientGone):  # gone already: nobody to tell
                await self._socket.send_error(exc, None)
                await self._socket.close(code=1008)
            return
        try:
            await self._serve()
        finally:
            await quotas.close_session(owner, sid)

    async def _serve(self) -> None:
        await self._services.sessions.save(self._state.session)
        relay = asyncio.create_task(self._relay.run(), name=f"relay-{self._state.session_id}")
        try:
            # Inside: a client gone before this was sent is a disconnect, and its session is dropped.
            await self._socket.send(SessionCreated(session=self._state.session))
            while True:
                await self._client_events.handle(await self._socket.receive())
        except ClientGone:
            pass
        finally:
            self._relay.stop()
            relay.cancel()
            await asyncio.gather(relay, return_exceptions=True)
            await self._close()

    async def _close(self) -> None:
        await self._runner.close()
        sid = self._state.session_id
        try:
            await self._services.sessions.drop(sid)
            # The one still running at close keeps its keys (its worker reads the cancel flag); they expire.
            await self._services.responses.forget(self._runner.ended)
        except Exception:
            log.warning("could not drop session %s", sid, exc_info=True)
