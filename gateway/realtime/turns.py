"""Turning the input audio buffer into the user's turn, for the client's commit and for an idle timeout.

Server VAD's `idle_timeout_ms` (as in OpenAI's API): when the user says nothing for that long after a
reply has played, `input_audio_buffer.timeout_triggered` is sent, the buffer becomes the user's turn
when it holds enough audio, and a response follows. `IdleTimer` is armed when a response ends, with
the time its audio still takes to play (sent faster than real time, it plays on at the client), and
disarmed by speech, a new item or a new response.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from gateway.realtime.client_socket import ClientSocket
from gateway.realtime.items import announce_item
from gateway.realtime.state import SessionState
from gateway.services import Services
from shared.messages import (
    InputAudio,
    InputAudioBufferCommitted,
    InputAudioBufferTimeoutTriggered,
    MessageItem,
    ServerVad,
)
from shared.pcm import TARGET_RATE

log = logging.getLogger(__name__)


async def commit_buffer(services: Services, socket: ClientSocket, state: SessionState) -> str:
    """The buffer becomes a user item (transcribed by the audio workers); its id."""
    audio = state.audio
    item = MessageItem(id=audio.item_id, role="user", content=[InputAudio(type="input_audio")])
    previous = await services.sessions.add_item(state.session_id, item, None)
    await audio.commit()
    await socket.send(InputAudioBufferCommitted(previous_item_id=previous, item_id=item.id))
    await announce_item(socket, item, previous, done=False)  # done once transcribed
    return item.id


class IdleTimer:
    def __init__(
        self, services: Services, socket: ClientSocket, state: SessionState, respond: Callable[[], Awaitable[None]]
    ) -> None:
        self._services = services
        self._socket = socket
        self._state = state
        self._respond = respond
        self._task: asyncio.Task[None] | None = None

    def arm(self, playing_s: float) -> None:
        """After a response: start counting once its audio has played, if server VAD asks for it."""
        self.disarm()
        vad = self._state.session.audio.input.turn_detection
        if isinstance(vad, ServerVad) and vad.idle_timeout_ms:
            wait_s = playing_s + vad.idle_timeout_ms / 1000
            self._task = asyncio.create_task(self._wait(wait_s), name="idle-timeout")

    def disarm(self) -> None:
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        self._task = None

    async def _wait(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self._task = None
        try:
            await self._timed_out()
        except Exception:
            log.warning("the idle timeout of session %s failed", self._state.session_id, exc_info=True)

    async def _timed_out(self) -> None:
        audio = self._state.audio
        end_ms = audio.total_samples * 1000 // TARGET_RATE
        start_ms = end_ms - audio.buffered_samples * 1000 // TARGET_RATE
        await self._socket.send(
            InputAudioBufferTimeoutTriggered(audio_start_ms=start_ms, audio_end_ms=end_ms, item_id=audio.item_id)
        )
        if audio.can_commit():
            with contextlib.suppress(Exception):  # a turn of silence is a courtesy; the reply matters
                await commit_buffer(self._services, self._socket, self._state)
        await self._respond()
