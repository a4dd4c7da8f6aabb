"""The realtime gateway's parts in process, against a real Redis, so that a failure names its module.

tests/e2e drives /v1/realtime through a real gateway, worker and model, where a failure may lie
anywhere from the socket to the model. Here each part of gateway/realtime/ is driven directly: the
response runner (`test_runner_*`), the dispatch of client events (`test_client_events_*`), the relay
of worker events (`test_relay_*`) and the connection that puts them together (`test_connection_*`).
Redis is real (conversations, audio logs, the workers' event streams). Two stand-ins: the decoder
client, whose responses wait until the test ends them, and the client, the far end of a real
Starlette WebSocket fed and read as ASGI messages.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis
from starlette.websockets import WebSocket

from gateway.realtime.audio_input import AudioInputBuffer
from gateway.realtime.client_events import ClientEvents
from gateway.realtime.client_socket import ClientSocket, Frame
from gateway.realtime.connection import RealtimeConnection
from gateway.realtime.runner import ResponseRunner
from gateway.realtime.state import SessionState
from gateway.realtime.worker_events import WorkerEventRelay
from gateway.services import Services
from shared import streams
from shared.config import Settings
from shared.errors import REDIS_LOST, InvalidRequest
from shared.keys import Keys
from shared.messages import (
    CLIENT_EVENT_MODELS,
    AudioCommitted,
    GenerateRequest,
    InputAudio,
    MessageItem,
    ResponseFinal,
    ResponseParams,
    Session,
    SpeechStarted,
    SpeechStopped,
    TokenDelta,
    TokenUsage,
    TranscriptDone,
    new_id,
)
from shared.sessions import SessionWriter

PREFIX = "rtproc"
KEYS = Keys(PREFIX)
WAIT_S = 3.0


class FakeDecoder:
    """The decoder client: each response yields "Hello", then waits until released or cancelled."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.cancels: list[tuple[str, str]] = []
        self.most_running = 0
        self.fail_with: Exception | None = None  # raised by the next response after its first token
        self._running = 0
        self._gates: dict[str, asyncio.Event] = {}
        self._reasons: dict[str, str] = {}

    async def generate(self, request: GenerateRequest, **_: Any) -> AsyncIterator[TokenDelta | ResponseFinal]:
        rid = request.response_id
        self.started.append(rid)
        self._running += 1
        self.most_running = max(self.most_running, self._running)
        try:
            yield TokenDelta(text="Hello", token_ids=[1])
            if self.fail_with is not None:
                exc, self.fail_with = self.fail_with, None
                raise exc
            await self._gate(rid).wait()
            if rid in self._reasons:
                yield ResponseFinal(status="cancelled", reason=self._reasons[rid])
                return
            yield TokenDelta(text=" world", token_ids=[2])
            yield ResponseFinal(status="completed", usage=TokenUsage(input_tokens=3, output_tokens=2))
        finally:
            self._running -= 1

    async def cancel(self, response_id: str, reason: str = "client_cancelled") -> None:
        self.cancels.append((response_id, reason))
        self._reasons[response_id] = reason
        self._gate(response_id).set()

    def release(self, response_id: str) -> None:
        """Let a response (running or not yet started) complete."""
        self._gate(response_id).set()

    def _gate(self, response_id: str) -> asyncio.Event:
        return self._gates.setdefault(response_id, asyncio.Event())


class Client:
    """The far end of a Starlette WebSocket: what the server sends, parsed, and frames to send it."""

    def __init__(self) -> None:
        self._to_server: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._from_server: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._to_server.put_nowait({"type": "websocket.connect"})
        self.gone = False
        scope = {"type": "websocket", "path": "/v1/realtime", "headers": [], "query_string": b""}
        self.ws = WebSocket(scope, self._receive, self._send)

    async def _receive(self) -> dict[str, Any]:
        return await self._to_server.get()

    async def _send(self, message: dict[str, Any]) -> None:
        if self.gone:
            raise OSError("the client has left")  # what uvicorn raises (ClientDisconnected)
        if message["type"] == "websocket.send":
            self._from_server.put_nowait(json.loads(message["text"]))

    def send(self, event: dict[str, Any]) -> None:
        self._to_server.put_nowait({"type": "websocket.receive", "text": json.dumps(event)})

    def leave(self) -> None:
        self.gone = True
        self._to_server.put_nowait({"type": "websocket.disconnect", "code": 1000})

    async def next(self) -> dict[str, Any]:
        return await asyncio.wait_for(self._from_server.get(), WAIT_S)

    async def until(self, kind: str) -> list[dict[str, Any]]:
        """Events up to and including the first of type `kind`."""
        seen = [await self.next()]
        while seen[-1]["type"] != kind:
            seen.append(await self.next())
        return seen

    def sent_so_far(self) -> list[dict[str, Any]]:
        events = []
        while not self._from_server.empty():
            events.append(self._from_server.get_nowait())
        return events


@dataclasses.dataclass
class Parts:
    services: Services
    decoder: FakeDecoder
    client: Client
    state: SessionState
    runner: ResponseRunner
    events: ClientEvents
    relay: WorkerEventRelay

    @property
    def sid(self) -> str:
        return self.state.session_id

    async def handle(self, event: dict[str, Any] | Frame) -> None:
        await self.events.handle(event if isinstance(event, Frame) else Frame(json.dumps(event), None))

    async def idle(self) -> None:
        """Wait until the runner has nothing running or queued."""
        for _ in range(int(WAIT_S / 0.005)):
            if not self.runner.busy:
                return
            await asyncio.sleep(0.005)
        raise TimeoutError("the runner is still busy")

    async def created(self) -> str:
        """The id of the response the client hears created next."""
        return (await self.client.until("response.created"))[-1]["response"]["id"]


def _services(redis_url: str, **settings: Any) -> tuple[Services, FakeDecoder]:
    decoder = FakeDecoder()
    services = Services.build(Settings(redis_url=redis_url, key_prefix=PREFIX, **settings))
    return dataclasses.replace(services, decoder=decoder), decoder  # type: ignore[arg-type]


@pytest.fixture
async def parts(fresh_redis_url: str) -> AsyncIterator[Parts]:
    services, decoder = _services(fresh_redis_url)
    client = Client()
    await client.ws.accept()
    socket = ClientSocket(client.ws)
    session = Session(id=new_id("sess"), model=services.settings.served_model_name, temperature=0.0)
    audio = AudioInputBuffer(services.audio, session.id, session.audio.input.format, max_seconds=30)
    state = SessionState(owner="local", session=session, audio=audio)
    await services.sessions.save(session)
    runner = ResponseRunner(services, socket, state)
    yield Parts(
        services,
        decoder,
        client,
        state,
        runner,
        ClientEvents(services, socket, state, runner),
        WorkerEventRelay(services, socket, state, runner),
    )
    await runner.close()
    await services.close()


def _user_text(text: str, item_id: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    if item_id:
        item["id"] = item_id
    return {"type": "conversation.item.create", "item": item}


# --- gateway/realtime/runner.py ---------------------------------------------------------------------


async def test_runner_streams_a_response_into_the_conversation(parts: Parts):
    await parts.runner.create(ResponseParams())
    created = await parts.client.next()  # sent before create returns
    assert created["type"] == "response.created"
    rid = created["response"]["id"]
    assert parts.runner.active_id == rid
    parts.decoder.release(rid)
    events = await parts.client.until("response.done")
    assert [e["type"] for e in events] == [
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    done = events[-1]["response"]
    assert done["status"] == "completed" and done["usage"]["output_tokens"] == 2
    await parts.idle()
    assert parts.runner.active_id is None and parts.runner.ended == [rid]
    stored = await parts.services.sessions.get_item(parts.sid, done["output"][0]["id"])
    assert stored.role == "assistant" and stored.text() == "Hello world"


async def test_runner_refuses_a_second_response_while_one_runs(parts: Parts):
    await parts.runner.create(ResponseParams())
    rid = await parts.created()
    with pytest.raises(InvalidRequest) as info:
        await parts.runner.create(ResponseParams())
    assert info.value.code == "conversation_already_has_active_response" and rid in info.value.message
    parts.decoder.release(rid)
    await parts.client.until("response.done")
    await parts.idle()
    await parts.runner.create(ResponseParams())  # free again
    assert await parts.created() != rid


async def test_runner_starts_the_queued_automatic_response_after_the_running_one(parts: Parts):
    await parts.runner.create(ResponseParams())
    first = await parts.created()
    await parts.runner.create_automatic()  # a VAD turn meanwhile: queued behind the running one
    await asyncio.sleep(0.05)
    assert parts.decoder.started == [first]
    parts.decoder.release(first)
    events = await parts.client.until("response.created")
    assert events[-2]["type"] == "response.done" and events[-2]["response"]["id"] == first
    second = events[-1]["response"]["id"]
    parts.decoder.release(second)
    assert (await parts.client.until("response.done"))[-1]["response"]["id"] == second
    await parts.idle()
    assert parts.decoder.started == [first, second] and parts.decoder.most_running == 1
    assert parts.runner.ended == [first, second]


async def test_runner_queues_a_vad_turn_behind_a_response_being_prepared(parts: Parts):
    """A VAD turn that arrives while a client's response.create still reads the conversation from
    Redis waits for that response instead of starting a second one beside it."""
    creating = asyncio.create_task(parts.runner.create(ResponseParams()))
    await asyncio.sleep(0)  # `creating` is now waiting on Redis
    await parts.runner.create_automatic()
    await creating
    first = await parts.created()
    await asyncio.sleep(0.05)  # a second response started beside the first would be announced by now
    assert "response.created" not in [e["type"] for e in parts.client.sent_so_far()]
    parts.decoder.release(first)
    events = await parts.client.until("response.created")
    assert events[-2]["type"] == "response.done" and events[-2]["response"]["id"] == first
    second = events[-1]["response"]["id"]
    parts.decoder.release(second)
    await parts.client.until("response.done")
    await parts.idle()
    assert parts.decoder.started == [first, second] and parts.decoder.most_running == 1


async def test_runner_logs_and_tells_a_generation_that_fails(parts: Parts, caplog: pytest.LogCaptureFixture):
    parts.decoder.fail_with = RuntimeError("a bug below the runner")
    await parts.runner.create(ResponseParams())
    rid = await parts.created()
    error = (await parts.client.until("error"))[-1]["error"]
    assert error["code"] == "server_error"
    await parts.idle()
    assert f"response {rid} failed in the gateway" in caplog.text and "a bug below the runner" in caplog.text
    assert parts.runner.ended == []
    await parts.runner.create(ResponseParams())  # the session goes on
    parts.decoder.release(await parts.created())
    assert (await parts.client.until("response.done"))[-1]["response"]["status"] == "completed"


async def test_runner_logs_and_tells_a_queued_response_that_cannot_start(
    parts: Parts, caplog: pytest.LogCaptureFixture
):
    """Before: the queued automatic response was started after the finished one's `finally`, inside
    its task, and an exception there was lost in a task nobody awaited; the client heard nothing."""
    await parts.runner.create(ResponseParams())
    first = await parts.created()
    await parts.runner.create_automatic()
    # By the time the queued one starts, the conversation cannot be read (a real Redis error).
    order = KEYS.session_order(parts.sid)
    await parts.services.redis.delete(order)
    await parts.services.redis.set(order, "not a list")
    parts.decoder.release(first)
    events = await parts.client.until("error")
    assert [e["type"] for e in events[-2:]] == ["response.done", "error"]
    assert events[-1]["error"]["code"] == "server_error"
    await parts.idle()
    assert "automatic response" in caplog.text and "WRONGTYPE" in caplog.text
    assert parts.decoder.started == [first]


async def test_runner_cancel_ends_the_running_response_cancelled(parts: Parts):
    with pytest.raises(InvalidRequest) as info:
        await parts.runner.cancel(None)
    assert info.value.code == "response_cancel_not_active"
    await parts.runner.create(ResponseParams())
    rid = await parts.created()
    with pytest.raises(InvalidRequest) as info:
        await parts.runner.cancel("resp_another")
    assert (info.value.code, info.value.param) == ("response_cancel_not_active", "response_id")
    await parts.runner.cancel(rid)
    done = (await parts.client.until("response.done"))[-1]["response"]
    assert done["status"] == "cancelled" and done["status_details"]["reason"] == "client_cancelled"
    assert parts.decoder.cancels == [(rid, "client_cancelled")]


async def test_runner_interrupt_cancels_for_the_new_turn(parts: Parts):
    await parts.runner.interrupt()  # nothing runs: nothing to cancel
    await parts.runner.create(ResponseParams())
    rid = await parts.created()
    await parts.runner.interrupt()
    done = (await parts.client.until("response.done"))[-1]["response"]
    assert done["status_details"]["reason"] == "turn_detected"
    assert parts.decoder.cancels == [(rid, "turn_detected")]


async def test_runner_close_cancels_the_running_response_and_drops_the_queued_one(parts: Parts):
    await parts.runner.create(ResponseParams())
    rid = await parts.created()
    await parts.client.until("response.output_text.delta")  # streaming: the cancel lands in the decoder's wait
    await parts.runner.create_automatic()
    await parts.runner.close()
    assert not parts.runner.busy and parts.runner.active_id is None
    assert parts.decoder.cancels == [(rid, "client_cancelled")] and parts.decoder.started == [rid]
    assert parts.runner.ended == []  # its keys stay (its worker reads the cancel flag) and expire


async def test_runner_ends_quietly_when_the_client_has_gone(parts: Parts, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO)
    await parts.runner.create(ResponseParams())
    rid = await parts.created()
    parts.client.gone = True
    parts.decoder.release(rid)
    await parts.idle()
    assert "client left during a response" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_responder_ends_a_reply_cut_off_by_redis_as_the_http_api_does(parts: Parts):
    parts.decoder.fail_with = redis.exceptions.ConnectionError("Connection closed by server.")
    await parts.runner.create(ResponseParams())
    done = (await parts.client.until("response.done"))[-1]["response"]
    assert done["status"] == "failed"
    assert done["status_details"]["error"] == {
        "type": "server_error",
        "code": "redis_unavailable",
        "message": REDIS_LOST,
    }
    assert done["output"][0]["content"][0]["text"] == "Hello"  # as far as it got


# --- gateway/realtime/client_events.py --------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "code", "param"),
    [
        (Frame(None, b"\x00\x01"), "invalid_json", None),
        (Frame("{not json", None), "invalid_json", None),
        (Frame("[1, 2]", None), "invalid_json", None),
        (Frame("[" * 100_000 + "]" * 100_000, None), "invalid_json", None),
        (Frame(json.dumps({"type": "x", "pad": "x" * (2 << 20)}), None), "message_too_large", None),
        (Frame(json.dumps({"event_id": "e1"}), None), "missing_required_parameter", "type"),
        (Frame(json.dumps({"type": "no.such.event", "event_id": "e1"}), None), "unknown_event", "type"),
        (
            Frame(json.dumps({"type": "conversation.item.create", "event_id": "e1"}), None),
            "missing_required_parameter",
            "item",
        ),
        (
            Frame(json.dumps({"type": "session.update", "event_id": "e1", "session": {"temperature": "warm"}}), None),
            "invalid_value",
            "session.temperature",
        ),
        (Frame(json.dumps({"type": "response.cancel", "event_id": "e1"}), None), "response_cancel_not_active", None),
    ],
)
async def test_client_events_answer_each_bad_frame_with_an_error(parts: Parts, frame: Frame, code: str, param):
    await parts.handle(frame)
    error = (await parts.client.next())["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", code, param)
    assert error["event_id"] == ("e1" if frame.text and '"e1"' in frame.text else None)
    await parts.handle({"type": "conversation.item.retrieve", "item_id": "nope"})  # the session goes on
    assert (await parts.client.next())["error"]["code"] == "item_not_found"


async def test_client_events_handle_every_client_event_type(parts: Parts):
    assert set(parts.events.handlers) == set(CLIENT_EVENT_MODELS.values())


async def test_client_events_update_the_session(parts: Parts):
    await parts.handle({"type": "session.update", "session": {"instructions": "Be brief.", "temperature": 0.3}})
    updated = (await parts.client.next())["session"]
    assert (updated["instructions"], updated["temperature"]) == ("Be brief.", 0.3)
    assert parts.state.session.instructions == "Be brief."
    saved = json.loads(await parts.services.redis.get(KEYS.session(parts.sid)))
    assert saved["instructions"] == "Be brief."
    await parts.handle({"type": "session.update", "event_id": "m", "session": {"model": "gpt-9"}})
    error = (await parts.client.next())["error"]
    assert (error["code"], error["event_id"]) == ("model_not_found", "m")


async def test_client_events_create_retrieve_and_delete_items(parts: Parts):
    await parts.handle(_user_text("Hello there", "item_a"))
    events = [await parts.client.next() for _ in range(3)]
    assert [e["type"] for e in events] == [
        "conversation.item.added",
        "conversation.item.created",
        "conversation.item.done",
    ]
    assert await parts.services.sessions.item_ids(parts.sid) == ["item_a"]
    await parts.handle({"type": "conversation.item.retrieve", "item_id": "item_a"})
    retrieved = await parts.client.next()
    assert retrieved["type"] == "conversation.item.retrieved"
    assert retrieved["item"]["content"] == [{"type": "input_text", "text": "Hello there"}]
    await parts.handle({"type": "conversation.item.delete", "item_id": "item_a"})
    assert (await parts.client.next())["type"] == "conversation.item.deleted"
    await parts.handle({"type": "conversation.item.delete", "item_id": "item_a", "event_id": "d"})
    error = (await parts.client.next())["error"]
    assert (error["code"], error["event_id"]) == ("item_not_found", "d")


async def test_client_events_start_and_cancel_responses_through_the_runner(parts: Parts):
    await parts.handle(_user_text("Hi"))
    await parts.client.until("conversation.item.done")
    await parts.handle({"type": "response.create", "response": {"instructions": "Say hi.", "max_output_tokens": 9}})
    limits, created = await parts.client.next(), await parts.client.next()
    assert limits["type"] == "rate_limits.updated" and limits["rate_limits"][0]["name"] == "requests"
    assert created["type"] == "response.created" and created["response"]["max_output_tokens"] == 9
    await parts.handle({"type": "response.create", "event_id": "dup"})
    error = (await parts.client.until("error"))[-1]["error"]
    assert (error["code"], error["event_id"]) == ("conversation_already_has_active_response", "dup")
    await parts.handle({"type": "response.cancel"})
    done = (await parts.client.until("response.done"))[-1]["response"]
    assert done["id"] == created["response"]["id"] and done["status"] == "cancelled"
    too_long = "x" * (parts.services.settings.max_instructions_chars + 1)
    await parts.idle()
    await parts.handle({"type": "response.create", "event_id": "long", "response": {"instructions": too_long}})
    error = (await parts.client.until("error"))[-1]["error"]
    assert (error["param"], error["event_id"]) == ("response.instructions", "long")
    assert not parts.runner.busy


async def test_client_events_commit_the_input_audio_buffer(parts: Parts):
    await parts.handle({"type": "input_audio_buffer.commit", "event_id": "c"})
    error = (await parts.client.next())["error"]
    assert (error["code"], error["event_id"]) == ("input_audio_buffer_commit_empty", "c")
    # Without server VAD, every appended sample counts (with it, only speech would).
    await parts.handle({"type": "session.update", "session": {"audio": {"input": {"turn_detection": None}}}})
    await parts.client.until("session.updated")
    silence = base64.b64encode(bytes(2 * 24000 // 5)).decode()  # 200 ms at 24 kHz
    await parts.handle({"type": "input_audio_buffer.append", "audio": silence})
    item_id = parts.state.audio.item_id
    await parts.handle({"type": "input_audio_buffer.commit"})
    events = [await parts.client.next() for _ in range(3)]
    assert [e["type"] for e in events] == [
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.created",
    ]
    assert events[0]["item_id"] == item_id
    assert await parts.services.sessions.item_ids(parts.sid) == [item_id]
    assert await parts.services.redis.xlen(KEYS.audio_log(parts.sid)) == 2  # the append, the commit


# --- gateway/realtime/worker_events.py --------------------------------------------------------------


@pytest.fixture
async def relaying(parts: Parts) -> AsyncIterator[redis.Redis]:
    """The relay running; a sync client to publish on the session's events as the workers do."""
    task = asyncio.create_task(parts.relay.run())
    worker_side = redis.Redis.from_url(parts.services.settings.redis_url)
    yield worker_side
    parts.relay.stop()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    worker_side.close()


def _publish(client: redis.Redis, parts: Parts, *events: Any) -> None:
    for event in events:
        streams.publish(client, KEYS.session_events(parts.sid), event, ttl_s=60)


async def test_relay_barge_in_cancels_and_the_vad_turn_answers_next(parts: Parts, relaying: redis.Redis):
    await parts.runner.create(ResponseParams())
    first = await parts.created()
    _publish(relaying, parts, SpeechStarted(item_id="item_u", audio_start_ms=120))
    events = await parts.client.until("response.done")
    started = events[0]
    assert (started["type"], started["audio_start_ms"], started["item_id"]) == (
        "input_audio_buffer.speech_started",
        120,
        "item_u",
    )
    assert events[-1]["response"]["status_details"]["reason"] == "turn_detected"
    assert parts.decoder.cancels == [(first, "turn_detected")] and parts.state.audio.speaking
    committed = AudioCommitted(item_id="item_u", previous_item_id=None, by_vad=True)
    turn = MessageItem(id="item_u", role="user", content=[InputAudio(type="input_audio")])
    SessionWriter(relaying, KEYS, ttl_s=60, max_items=10).add_item(parts.sid, turn)  # as the audio worker does
    _publish(relaying, parts, SpeechStopped(item_id="item_u", audio_end_ms=900), committed)
    events = await parts.client.until("response.created")
    assert [e["type"] for e in events] == [
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.created",
        "response.created",
    ]
    assert not parts.state.audio.speaking


async def test_relay_announces_an_item_once_its_transcript_is_in(parts: Parts, relaying: redis.Redis):
    spoken = MessageItem(id="item_s", role="user", content=[InputAudio(type="input_audio")])
    await parts.services.sessions.add_item(parts.sid, spoken, None)
    writer = SessionWriter(relaying, KEYS, ttl_s=60, max_items=10)
    assert writer.set_transcript(parts.sid, "item_s", "hello there")
    _publish(relaying, parts, TranscriptDone(item_id="item_s", transcript="hello there", duration_s=0.5))
    completed, done = await parts.client.next(), await parts.client.next()
    assert completed["type"] == "conversation.item.input_audio_transcription.completed"
    assert completed["transcript"] == "hello there"
    assert done["type"] == "conversation.item.done" and done["item"]["content"][0]["transcript"] == "hello there"


# --- gateway/realtime/connection.py -----------------------------------------------------------------


async def test_connection_drops_everything_of_its_session_when_the_socket_closes(fresh_redis_url: str):
    services, decoder = _services(fresh_redis_url)
    client = Client()
    await client.ws.accept()
    connection = asyncio.create_task(RealtimeConnection(client.ws, services).run())
    try:
        sid = (await client.until("session.created"))[-1]["session"]["id"]
        assert await services.redis.zscore(KEYS.quota_sessions("local"), sid) is not None
        client.send(_user_text("Hi"))
        client.send({"type": "response.create"})
        rid = (await client.until("response.created"))[-1]["response"]["id"]
        assert await services.redis.keys(f"{PREFIX}:*{sid}*")
        client.leave()
        await asyncio.wait_for(connection, WAIT_S)
        assert decoder.cancels == [(rid, "client_cancelled")]
        assert await services.redis.keys(f"{PREFIX}:*{sid}*") == []
        assert await services.redis.zscore(KEYS.quota_sessions("local"), sid) is None
    finally:
        connection.cancel()
        await services.close()
