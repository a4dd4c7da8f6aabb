"""The connection's responses: one at a time, plus the automatic one that a server VAD turn asks for.

The runner owns the single generation task. Whoever asks for a response (the client's
`response.create`, or a VAD turn while idle) prepares and announces it (`response.created`)
before the request returns, so a refusal reaches the client as an error on its own event and the
events keep their order; the task then streams it (`gateway.realtime.responder`). A VAD turn that
ends while a response runs (usually one it has just cancelled) queues an automatic response, and
the same task starts it from its own loop once the running one has ended. Whatever fails in the
task is logged and told to the client, and a done-callback logs anything that still escapes it:
no exception is left in a task nobody awaits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from gateway.realtime.client_socket import ClientGone, ClientSocket
from gateway.realtime.items import check_length
from gateway.realtime.responder import Stop, stream_response
from gateway.realtime.state import SessionState
from gateway.realtime.turns import IdleTimer
from gateway.services import Services
from gateway.speech.stream import SpeechStream, encoding_of
from gateway.tools.check import check_tools, realtime_tools
from shared.errors import InvalidRequest
from shared.messages import (
    AudioOutput,
    GenerateRequest,
    Response,
    ResponseCreated,
    ResponseParams,
    new_id,
    output_modalities,
    tool_choice_name,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Planned:
    response: Response
    request: GenerateRequest
    in_conversation: bool
    voice: AudioOutput | None  # how to speak it; None: a text reply


class ResponseRunner:
    def __init__(self, services: Services, socket: ClientSocket, state: SessionState) -> None:
        self._services = services
        self._socket = socket
        self._state = state
        # Taken from the moment a response is asked for until the task has nothing left to run, so
        # that a VAD turn arriving while one is being prepared queues behind it instead of racing it.
        self._busy = False
        self._task: asyncio.Task[None] | None = None
        self._response_id: str | None = None  # announced and not yet ended
        self._stop = Stop.new()  # of the announced response: silences its audio at once
        self._speaking = False  # the announced response is spoken
        self._automatic_due = False
        self.ended: list[str] = []  # responses that ran to their end; their keys go with the session
        self.idle = IdleTimer(services, socket, state, self.create_automatic)

    @property
    def active_id(self) -> str | None:
        """The response announced and not yet done, if any."""
        return self._response_id

    @property
    def busy(self) -> bool:
        return self._busy

    @property
    def speaking(self) -> bool:
        """A spoken response is under way (its audio may be held back, or stopped)."""
        return self._response_id is not None and self._speaking

    def hold_audio(self) -> None:
        """Send no more of the spoken reply for now (speech over it is being judged)."""
        self._stop.playing.clear()

    def release_audio(self) -> None:
        self._stop.playing.set()

    async def create(self, params: ResponseParams) -> None:
        """Start a response now; InvalidRequest while one is under way."""
        if self._busy:
            active = f": {self._response_id}" if self._response_id else ""
            raise InvalidRequest(
                f"Conversation already has an active response in progress{active}.",
                code="conversation_already_has_active_response",
            )
        self.idle.disarm()
        self._busy = True
        try:
            planned = await self._plan(params)
            await self._announce(planned)
        except BaseException:
            self._busy = False
            if self._automatic_due:  # a VAD turn queued behind this one: its turn now
                self._launch(None)
            raise
        self._launch(planned)

    async def create_automatic(self) -> None:
        """The response a server VAD turn asks for: now when idle, else once the running one ends."""
        if self._busy:
            self._automatic_due = True
        else:
            await self.create(ResponseParams())

    async def cancel(self, response_id: str | None) -> None:
        """The client's `response.cancel`: the running response ends `cancelled`."""
        active = self._response_id
        if active is None or (response_id is not None and response_id != active):
            raise InvalidRequest(
                "There is no active response to cancel.",
                code="response_cancel_not_active",
                param="response_id" if response_id else None,
            )
        self._stop.set("client_cancelled")
        await self._services.decoder.cancel(active)

    async def interrupt(self) -> None:
        """Barge-in: the user speaks over the running response, which ends `cancelled` (turn_detected)."""
        if self._response_id is not None:
            self._stop.set("turn_detected")
            await self._services.decoder.cancel(self._response_id, "turn_detected")

    async def close(self) -> None:
        """The socket has closed: stop the running response and wait until its task has ended."""
        self._automatic_due = False
        self.idle.disarm()
        task, rid = self._task, self._response_id
        if task is None:
            return
        if rid is not None:
            try:
                await self._services.decoder.cancel(rid)
            except Exception:
                log.warning("could not cancel response %s", rid, exc_info=True)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    # --- the generation task --------------------------------------------------------------------

    def _launch(self, planned: _Planned | None) -> None:
        self._busy = True
        task = asyncio.create_task(self._drive(planned), name=f"responses-{self._state.session_id}")
        task.add_done_callback(_log_escaped)
        self._task = task

    async def _drive(self, planned: _Planned | None) -> None:
        """Stream the announced response (if any), then each automatic one queued meanwhile."""
        try:
            if planned is None:
                planned = await self._next_automatic()
            while planned is not None:
                playing = await self._stream(planned)
                planned = await self._next_automatic()
                if planned is None:
                    self.idle.arm(playing)
        except ClientGone:
            log.info("client left during a response of session %s", self._state.session_id)
        finally:
            self._response_id = None
            self._task = None
            self._busy = False

    async def _stream(self, planned: _Planned) -> float:
        """One response to its end; a failure here ends it with an error event, the session goes on.

        Returns how long its audio still plays at the client (0 for text)."""
        rid = planned.response.id
        speech = self._speech(planned.voice)
        started = time.monotonic()
        try:
            await stream_response(
                planned.response,
                planned.request,
                decoder=self._services.decoder,
                sessions=self._services.sessions,
                send=self._socket.send,
                in_conversation=planned.in_conversation,
                speech=speech,
                stop=self._stop,
                on_item=self._state.remember_spoken,
            )
        except ClientGone:
            raise
        except Exception as exc:
            log.exception("response %s failed in the gateway", rid)
            with contextlib.suppress(Exception):
                await self._socket.send_error(exc, None)
        else:
            self.ended.append(rid)
        finally:
            self._response_id = None
        played_s = speech.spoken.played_ms / 1000 if speech is not None else 0.0
        return max(0.0, played_s - (time.monotonic() - started))

    def _speech(self, voice: AudioOutput | None) -> SpeechStream | None:
        if voice is None:
            return None
        encoding, rate = encoding_of(voice.format)
        return SpeechStream(
            self._services.speech,
            self._state.session_id,
            encoding=encoding,
            rate=rate,
            speed=voice.speed,
            ahead=self._services.settings.speech_pieces_ahead,
        )

    async def _next_automatic(self) -> _Planned | None:
        """The queued automatic response, announced; None when none is due or it could not start."""
        if not self._automatic_due:
            return None
        self._automatic_due = False
        try:
            planned = await self._plan(ResponseParams())
            await self._announce(planned)
        except ClientGone:
            raise
        except Exception as exc:
            log.exception("the automatic response of session %s could not start", self._state.session_id)
            with contextlib.suppress(Exception):
                await self._socket.send_error(exc, None)
            return None
        return planned

    # --- preparing a response -------------------------------------------------------------------

    async def _plan(self, params: ResponseParams) -> _Planned:
        """The response and the decoder's request, from the params over the session's defaults."""
        s, session = self._services.settings, self._state.session
        instructions = params.instructions if params.instructions is not None else session.instructions
        check_length(instructions, s.max_instructions_chars, "response.instructions")
        max_tokens = params.max_output_tokens or session.max_output_tokens
        in_conversation = params.conversation == "auto"
        asked = params.output_modalities or params.modalities
        modalities = output_modalities(asked) if asked else session.output_modalities
        response = Response(
            id=new_id("resp"),
            conversation_id=session.id if in_conversation else None,
            output_modalities=modalities,
            max_output_tokens=max_tokens,
            metadata=params.metadata,
        )
        request = GenerateRequest(
            response_id=response.id,
            session_id=session.id,
            item_ids=await self._services.sessions.item_ids(session.id),
            instructions=instructions,
            temperature=params.temperature if params.temperature is not None else session.temperature,
            top_p=s.default_top_p,
            fusion=session.fusion,
            max_output_tokens=s.max_output_tokens_cap
            if max_tokens == "inf"
            else min(max_tokens, s.max_output_tokens_cap),
            tools=realtime_tools(params.tools if params.tools is not None else session.tools),
            tool_choice=tool_choice_name(params.tool_choice or session.tool_choice),
        )
        check_tools(request.tools, request.tool_choice, max_chars=s.max_tools_chars, param="response.tools")
        voice = session.audio.output if modalities == ["audio"] else None
        return _Planned(response, request, in_conversation, voice)

    async def _announce(self, planned: _Planned) -> None:
        self._response_id = planned.response.id  # from here a cancel or a barge-in reaches it
        self._stop = Stop.new()
        self._speaking = planned.voice is not None
        try:
            await self._socket.send(ResponseCreated(response=planned.response))
        except BaseException:
            self._response_id = None
            raise


def _log_escaped(task: asyncio.Task[None]) -> None:
    """The last word on a generation task: `_drive` handles its failures, so one here is a bug."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("task %s failed", task.get_name(), exc_info=exc)
