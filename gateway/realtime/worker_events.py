"""What the workers report about a session, relayed to its client and acted on.

Audio workers say when speech starts and stops, stream transcripts and commit the turns server VAD
ends; image workers say when a picture is described, dropped or failed. Speech over a running
response cancels it (barge-in; over a spoken reply, unless it proves a backchannel: `barge_in.py`);
a VAD turn asks the runner for a response. A failure to handle one
event is logged and told to the client, and the relay goes on with the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.realtime.barge_in import BargeIn
from gateway.realtime.client_socket import ClientGone, ClientSocket
from gateway.realtime.items import announce_item
from gateway.realtime.runner import ResponseRunner
from gateway.realtime.state import SessionState
from gateway.services import Services
from shared.errors import InvalidRequest
from shared.messages import (
    AudioCommitted,
    ConversationItemDeleted,
    ConversationItemDone,
    ConversationItemInputImageDropped,
    ErrorDetail,
    ImageDescribed,
    ImageDropped,
    ImageFailed,
    InputAudioBufferCommitted,
    InputAudioBufferSpeechStarted,
    InputAudioBufferSpeechStopped,
    InputAudioTranscriptionCompleted,
    InputAudioTranscriptionDelta,
    InputAudioTranscriptionFailed,
    SessionEvent,
    SpeechStarted,
    SpeechStopped,
    TranscriptDelta,
    TranscriptDone,
    TranscriptFailed,
    TranscriptionUsage,
)

log = logging.getLogger(__name__)

_EVENTS_BLOCK_MS = 1000


class WorkerEventRelay:
    def __init__(self, services: Services, socket: ClientSocket, state: SessionState, runner: ResponseRunner) -> None:
        self._services = services
        self._socket = socket
        self._state = state
        self._runner = runner
        self._stopping = False
        self._handlers: dict[type, Callable[[Any], Awaitable[None]]] = {
            SpeechStarted: self._on_speech_started,
            SpeechStopped: self._on_speech_stopped,
            AudioCommitted: self._on_committed,
            TranscriptDelta: self._on_transcript_delta,
            TranscriptDone: self._on_transcript_done,
            TranscriptFailed: self._on_transcript_failed,
            ImageDescribed: self._on_image_described,
            ImageDropped: self._on_image_dropped,
            ImageFailed: self._on_image_failed,
        }
        s = services.settings
        self._barge_in = BargeIn(
            min_speech_ms=s.barge_in_min_speech_ms,
            words=s.backchannel_words,
            interrupt_words=s.interrupt_words,
            speaking=self._interruptible_speech,
            silence_ms=self._vad_silence_ms,
            hold=runner.hold_audio,
            release=runner.release_audio,
            interrupt=self._handle_all,
            drop=self._drop_item,
        )

    def stop(self) -> None:
        """End `run` within one read of the session's events (the socket has closed).

        Cancelling its task is not enough: on Python 3.11 a cancel that lands while redis-py sends a
        command is lost (its asyncio.wait_for returns the finished send), and the loop would read on
        forever, so the session would never close."""
        self._stopping = True
        self._barge_in.close()

    async def run(self) -> None:
        """Relay the session's worker events until stopped or the client has gone."""
        after = "0-0"
        while not self._stopping:
            try:
                entries = await self._services.audio.events(self._state.session_id, after, _EVENTS_BLOCK_MS)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("reading worker events of %s failed; retrying", self._state.session_id, exc_info=True)
                await asyncio.sleep(1)
                continue
            for entry_id, event in entries:
                after = entry_id
                try:
                    if not await self._barge_in.on_event(event):
                        await self._handlers[type(event)](event)
                except ClientGone:
                    return
                except Exception as exc:
                    log.exception("handling %s failed", event.type)
                    with contextlib.suppress(Exception):
                        await self._socket.send_error(exc, None)

    # --- speech ---------------------------------------------------------------------------------

    def _interruptible_speech(self) -> bool:
        vad = self._state.session.audio.input.turn_detection
        return vad is not None and vad.interrupt_response and self._runner.speaking

    def _vad_silence_ms(self) -> int:
        """How long the VAD waits after speech before it says the speech stopped."""
        vad = self._state.session.audio.input.turn_detection
        return vad.silence_duration_ms if vad is not None else 0

    async def _handle_all(self, events: list[SessionEvent]) -> None:
        """Speech held while it was judged proved an interruption: its events go out in order."""
        for event in events:
            await self._handlers[type(event)](event)

    async def _drop_item(self, item_id: str) -> None:
        """A backchannel: its utterance leaves the conversation (if the audio worker put it there)."""
        with contextlib.suppress(InvalidRequest):
            await self._services.sessions.delete_item(self._state.session_id, item_id)
        self._state.audio.committed_by_vad()

    async def _on_speech_started(self, event: SpeechStarted) -> None:
        self._state.audio.speaking = True
        self._runner.idle.disarm()
        await self._socket.send(
            InputAudioBufferSpeechStarted(audio_start_ms=event.audio_start_ms, item_id=event.item_id)
        )
        vad = self._state.session.audio.input.turn_detection
        if vad is not None and vad.interrupt_response:
            await self._runner.interrupt()

    async def _on_speech_stopped(self, event: SpeechStopped) -> None:
        await self._socket.send(InputAudioBufferSpeechStopped(audio_end_ms=event.audio_end_ms, item_id=event.item_id))

    async def _on_committed(self, event: AudioCommitted) -> None:
        if not event.by_vad:
            return  # the gateway announced the client's own commit already
        self._state.audio.committed_by_vad()
        await self._socket.send(
            InputAudioBufferCommitted(previous_item_id=event.previous_item_id, item_id=event.item_id)
        )
        # The audio worker wrote the turn's item: announce it as stored (the transcript may be in already).
        with contextlib.suppress(InvalidRequest):  # deleted meanwhile: nothing to announce
            item = await self._services.sessions.get_item(self._state.session_id, event.item_id)
            await announce_item(self._socket, item, event.previous_item_id, done=False)
        vad = self._state.session.audio.input.turn_detection
        if vad is not None and vad.create_response:
            await self._runner.create_automatic()

    async def _on_transcript_delta(self, event: TranscriptDelta) -> None:
        if self._transcripts_on():
            await self._socket.send(InputAudioTranscriptionDelta(item_id=event.item_id, delta=event.delta))

    async def _on_transcript_done(self, event: TranscriptDone) -> None:
        if self._transcripts_on():
            await self._socket.send(
                InputAudioTranscriptionCompleted(
                    item_id=event.item_id,
                    transcript=event.transcript,
                    usage=TranscriptionUsage(seconds=round(event.duration_s, 3)),
                )
            )
        await self._item_done(event.item_id)

    async def _on_transcript_failed(self, event: TranscriptFailed) -> None:
        error = ErrorDetail(type="invalid_request_error", code=event.code, message=event.message)
        await self._socket.send(InputAudioTranscriptionFailed(item_id=event.item_id, error=error))
        await self._item_done(event.item_id)

    def _transcripts_on(self) -> bool:
        return self._state.session.audio.input.transcription is not None

    # --- pictures -------------------------------------------------------------------------------

    async def _on_image_described(self, event: ImageDescribed) -> None:
        await self._item_done(event.item_id)

    async def _on_image_dropped(self, event: ImageDropped) -> None:
        await self._socket.send(
            ConversationItemInputImageDropped(
                item_id=event.item_id, reason=event.reason, kept_item_id=event.kept_item_id
            )
        )
        await self._socket.send(ConversationItemDeleted(item_id=event.item_id))

    async def _on_image_failed(self, event: ImageFailed) -> None:
        await self._socket.send_error(
            InvalidRequest(
                f"{event.message} (item {event.item_id})",
                # No image worker finished it in time, or the picture itself is bad.
                code="media_unavailable" if event.code == "media_unavailable" else "invalid_image",
                param="item.content.image_url",
            ),
            None,
        )
        await self._item_done(event.item_id)

    async def _item_done(self, item_id: str) -> None:
        """Announce an item once every transcript and description in it is in."""
        with contextlib.suppress(InvalidRequest):  # deleted meanwhile: nothing to announce
            item = await self._services.sessions.get_item(self._state.session_id, item_id)
            if not item.pending_media():
                await self._socket.send(ConversationItemDone(previous_item_id=None, item=item))
