"""Chat completions in process, against a real Redis, so that a failure names gateway/http/completion.py.

tests/e2e posts to /v1/chat/completions on a real gateway, worker and model, where a failure may lie
anywhere from the socket to the model. Here the gateway's app is called in this process: through
httpx's ASGI transport for whole answers and streams (`test_whole_*`, `test_stream_*`, and the checks
made before anything is stored), as raw ASGI messages for a client that leaves mid-stream
(`test_client_*`), and `completion.start` directly for what only batch lines do (`test_batch_*`).
Redis is real: each request's messages become a conversation there, which must be gone once it is
answered. One stand-in: the decoder client, which plays a script of token deltas and a final (the
decoder's stream as `JobClient` hands it on) and records what it was asked and cancelled.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis
from fastapi import FastAPI

from gateway.app import create_app
from gateway.http import completion
from gateway.http.chat_schema import ChatCompletionRequest
from gateway.services import Services
from shared.config import Settings
from shared.errors import REDIS_LOST, status_for
from shared.messages import GenerateRequest, ResponseFinal, TokenDelta, TokenUsage

PREFIX = "chatproc"
WAIT_S = 3.0
PATH = "/v1/chat/completions"


def _deltas(*texts: str) -> list[TokenDelta | ResponseFinal]:
    return [TokenDelta(text=t, token_ids=[n]) for n, t in enumerate(texts)]


def _completed(input_tokens: int = 3, output_tokens: int = 2, cached_tokens: int = 0) -> ResponseFinal:
    usage = TokenUsage(input_tokens=input_tokens, output_tokens=output_tokens, cached_tokens=cached_tokens)
    return ResponseFinal(status="completed", usage=usage)


class FakeDecoder:
    """The decoder client: plays `script` for every response, whatever was cancelled meanwhile.

    With `hold`, it stops after the first delta until the response is cancelled, then ends it
    cancelled. `fail_with` is raised after the first delta instead of playing the rest.
    """

    def __init__(self, services: Services) -> None:
        self._services = services
        self.script: list[TokenDelta | ResponseFinal] = [*_deltas("Hello", " world"), _completed()]
        self.hold = False
        self.holding = asyncio.Event()
        self.fail_with: Exception | None = None
        self.requests: list[GenerateRequest] = []
        self.flags: list[tuple[bool, bool]] = []  # (attach, detached) of each generate
        self.conversations: list[list[tuple[str, str]]] = []  # (role, text) of the items, as generate found them
        self.keys_seen: list[list[bytes]] = []  # the session's keys in Redis, as generate found them
        self.cancels: list[tuple[str, str]] = []
        self._cancelled: dict[str, asyncio.Event] = {}

    async def generate(
        self, request: GenerateRequest, *, attach: bool = False, detached: bool = False
    ) -> AsyncIterator[TokenDelta | ResponseFinal]:
        self.requests.append(request)
        self.flags.append((attach, detached))
        sid, sessions = request.session_id, self._services.sessions
        items = [await sessions.get_item(sid, item_id) for item_id in request.item_ids]
        self.conversations.append([(item.role, item.text()) for item in items])
        self.keys_seen.append(await self._services.redis.keys(f"{PREFIX}:*{sid}*"))
        for n, event in enumerate(self.script):
            yield event
            if n == 0 and self.fail_with is not None:
                raise self.fail_with
            if n == 0 and self.hold:
                self.holding.set()
                await self._gate(request.response_id).wait()
                yield ResponseFinal(status="cancelled", reason=self.cancels[-1][1])
                return

    async def cancel(self, response_id: str, reason: str = "client_cancelled") -> None:
        self.cancels.append((response_id, reason))
        self._gate(response_id).set()

    def _gate(self, response_id: str) -> asyncio.Event:
        return self._cancelled.setdefault(response_id, asyncio.Event())


@dataclasses.dataclass
class Gateway:
    app: FastAPI
    services: Services
    decoder: FakeDecoder
    http: httpx.AsyncClient

    @property
    def model(self) -> str:
        return self.services.settings.served_model_name

    def body(self, **fields: Any) -> dict[str, Any]:
        return {"model": self.model, "messages": [{"role": "user", "content": "Hi"}], **fields}

    async def post(self, **fields: Any) -> httpx.Response:
        return await self.http.post(PATH, json=self.body(**fields))

    @property
    def rid(self) -> str:
        return self.decoder.requests[-1].response_id

    @property
    def sid(self) -> str:
        return self.decoder.requests[-1].session_id

    async def session_keys(self, sid: str) -> list[bytes]:
        return await self.services.redis.keys(f"{PREFIX}:*{sid}*")

    async def dropped(self, sid: str) -> bool:
        """Whether the session's keys are gone within WAIT_S (they are deleted in a task of their own)."""
        for _ in range(int(WAIT_S / 0.01)):
            if not await self.session_keys(sid):
                return True
            await asyncio.sleep(0.01)
        return False


@pytest.fixture
async def gw(fresh_redis_url: str) -> AsyncIterator[Gateway]:
    """The app with Services on the real Redis, the decoder client swapped for the fake (no lifespan:
    it would build Services of its own and start the batch scheduler)."""
    built = Services.build(Settings(redis_url=fresh_redis_url, key_prefix=PREFIX))
    decoder = FakeDecoder(built)
    services = dataclasses.replace(built, decoder=decoder)  # type: ignore[arg-type]
    app = create_app(services.settings)
    app.state.services = services
    transport = httpx.ASGITransport(app=app)  # a client on 127.0.0.1: let in without an API key
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        yield Gateway(app, services, decoder, client)
    await services.close()


def _sse(response: httpx.Response) -> list[Any]:
    """A server-sent event stream's payloads: JSON objects, then "[DONE]"."""
    assert response.headers["content-type"].startswith("text/event-stream")
    frames = response.text.split("\n\n")
    assert frames[-1] == "" and all(f.startswith("data: ") for f in frames[:-1])
    return [f[6:] if f == "data: [DONE]" else json.loads(f[6:]) for f in frames[:-1]]


def _contents(events: list[Any]) -> list[str]:
    """The text of each chunk that has some (the first has "", the role's)."""
    deltas = [e["choices"][0]["delta"] for e in events if isinstance(e, dict) and e.get("choices")]
    return [d["content"] for d in deltas if "content" in d]


# --- whole answers ----------------------------------------------------------------------------------


async def test_whole_stores_the_conversation_and_assembles_text_and_usage(gw: Gateway):
    gw.decoder.script = [*_deltas("Hel", "lo", " world"), _completed(7, 3, cached_tokens=4)]
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": [{"type": "text", "text": "And "}, {"type": "text", "text": "again?"}]},
    ]
    response = await gw.post(messages=messages, temperature=0.5)
    assert response.status_code == 200
    body = response.json()
    assert body == {
        "id": gw.rid,
        "object": "chat.completion",
        "created": body["created"],
        "model": gw.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello world", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 7,
            "completion_tokens": 3,
            "total_tokens": 10,
            "prompt_tokens_details": {"cached_tokens": 4},
        },
    }
    request = gw.decoder.requests[0]
    assert (request.instructions, request.temperature, request.priority) == ("Be brief.", 0.5, "interactive")
    assert gw.decoder.conversations == [[("user", "Hi"), ("assistant", "Hello!"), ("user", "And again?")]]
    assert gw.decoder.flags == [(False, False)]
    assert gw.decoder.keys_seen[0]  # the conversation was in Redis while the decoder answered ...
    assert await gw.dropped(gw.sid)  # ... and is gone once answered
    assert gw.decoder.cancels == []


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"max_tokens": 2}, 2),
        ({"max_tokens": 2, "max_completion_tokens": 3}, 3),
        ({"max_tokens": 10**9}, None),  # None: the service's cap
        ({}, None),
    ],
)
async def test_whole_ends_at_the_token_limit_with_finish_reason_length(
    gw: Gateway, fields: dict[str, Any], expected: int | None
):
    gw.decoder.script = [*_deltas("Hello"), ResponseFinal(status="incomplete", reason="max_output_tokens")]
    response = await gw.post(**fields)
    assert response.status_code == 200
    choice = response.json()["choices"][0]
    assert (choice["message"]["content"], choice["finish_reason"]) == ("Hello", "length")
    cap = gw.services.settings.max_output_tokens_cap
    assert gw.decoder.requests[0].max_output_tokens == (expected or cap)
    assert await gw.dropped(gw.sid)


@pytest.mark.parametrize(
    ("deltas", "stop", "text", "cancelled"),
    [
        (["Hello wor", "ld. EN", "D and more"], "END", "Hello world. ", True),  # across two deltas
        (["one two three"], ["three", "two"], "one ", True),  # the first of several, within a delta
        (["Hi EN", "D"], ["END"], "Hi ", True),  # in the last delta
        (["Hello E", "N"], "END", "Hello EN", False),  # a held-back tail that turned out no stop
    ],
)
async def test_whole_cuts_the_text_at_a_stop_sequence(
    gw: Gateway, deltas: list[str], stop: str | list[str], text: str, cancelled: bool
):
    # The decoder ran out of tokens meanwhile: a stop sequence seen still makes it a "stop".
    gw.decoder.script = [*_deltas(*deltas), ResponseFinal(status="incomplete", reason="max_output_tokens")]
    response = await gw.post(stop=stop)
    choice = response.json()["choices"][0]
    assert choice["message"]["content"] == text
    assert choice["finish_reason"] == ("stop" if cancelled else "length")
    assert gw.decoder.cancels == ([(gw.rid, "stop_sequence")] if cancelled else [])
    assert await gw.dropped(gw.sid)


@pytest.mark.parametrize(
    ("error_code", "status", "code"),
    [
        ("decoder_unavailable", 503, "decoder_unavailable"),
        ("timeout", 503, "timeout"),
        ("media_unavailable", 503, "media_unavailable"),
        ("redis_unavailable", 503, "redis_unavailable"),
        ("server_error", 500, "server_error"),
        (None, 500, "server_error"),
    ],
)
async def test_whole_answers_a_failed_final_with_its_status_and_an_openai_error(
    gw: Gateway, error_code: Any, status: int, code: str
):
    message = None if error_code is None else f"it ended {error_code}"
    failed = ResponseFinal(status="failed", error_code=error_code, error_message=message)
    gw.decoder.script = [*_deltas("Hello"), failed]
    response = await gw.post()
    assert response.status_code == status == status_for(error_code or "server_error")
    assert response.json() == {
        "error": {"message": message or "The decoder failed.", "type": "server_error", "param": None, "code": code}
    }
    assert await gw.dropped(gw.sid)


async def test_whole_answers_a_reply_cut_off_by_redis_with_a_503(gw: Gateway):
    gw.decoder.fail_with = redis.exceptions.ConnectionError("Connection closed by server.")
    response = await gw.post()
    assert response.status_code == 503
    assert response.json()["error"] == {
        "message": REDIS_LOST,
        "type": "server_error",
        "param": None,
        "code": "redis_unavailable",
    }
    assert await gw.dropped(gw.sid)


async def test_whole_refuses_an_unknown_model_before_storing_anything(gw: Gateway):
    response = await gw.http.post(PATH, json={**gw.body(), "model": "gpt-9"})
    assert response.status_code == 404
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "model_not_found", "model")
    assert gw.model in error["message"]
    assert gw.decoder.requests == []
    assert await gw.services.redis.keys(f"{PREFIX}:session:*") == []


# --- streams ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("include_usage", [True, False])
async def test_stream_sends_chunks_in_order_ending_with_done(gw: Gateway, include_usage: bool):
    response = await gw.post(stream=True, stream_options={"include_usage": include_usage})
    assert response.status_code == 200
    events = _sse(response)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    for chunk in chunks:
        assert (chunk["id"], chunk["object"], chunk["model"]) == (gw.rid, "chat.completion.chunk", gw.model)
    if include_usage:  # last, with no choices
        usage = {
            "prompt_tokens": 3,
            "completion_tokens": 2,
            "total_tokens": 5,
            "prompt_tokens_details": {"cached_tokens": 0},
        }
        assert (chunks[-1]["choices"], chunks[-1]["usage"]) == ([], usage)
        chunks = chunks[:-1]
    assert not [c for c in chunks if "usage" in c]
    assert [(c["choices"][0]["delta"], c["choices"][0]["finish_reason"]) for c in chunks] == [
        ({"role": "assistant", "content": ""}, None),
        ({"content": "Hello"}, None),
        ({"content": " world"}, None),
        ({}, "stop"),
    ]
    assert await gw.dropped(gw.sid)


async def test_stream_holds_back_what_may_start_a_stop_sequence(gw: Gateway):
    gw.decoder.script = [*_deltas("Hello wor", "ld. EN", "D and more"), _completed()]
    events = _sse(await gw.post(stream=True, stop="END"))
    assert _contents(events) == ["", "Hello wor", "ld. "]
    assert events[-2]["choices"][0]["finish_reason"] == "stop" and events[-1] == "[DONE]"
    assert gw.decoder.cancels == [(gw.rid, "stop_sequence")]
    assert await gw.dropped(gw.sid)


async def test_stream_ends_a_failed_final_with_an_error_event_then_done(gw: Gateway):
    failed = ResponseFinal(status="failed", error_code="timeout", error_message="Generation took too long.")
    gw.decoder.script = [*_deltas("Hello"), failed]
    response = await gw.post(stream=True, stream_options={"include_usage": True})
    assert response.status_code == 200  # the status went out with the first chunk
    events = _sse(response)
    assert _contents(events) == ["", "Hello"]
    assert events[-2:] == [
        {
            "error": {
                "message": "Generation took too long.",
                "type": "server_error",
                "param": None,
                "code": "timeout",
            }
        },
        "[DONE]",
    ]
    assert await gw.dropped(gw.sid)


# --- a client that leaves ---------------------------------------------------------------------------


async def test_client_leaving_mid_stream_cancels_the_job_and_drops_the_conversation(gw: Gateway):
    """As uvicorn does (ASGI spec 2.3): `http.disconnect` from receive() while the reply streams."""
    gw.decoder.hold = True
    request_body = json.dumps(gw.body(stream=True)).encode()
    left = asyncio.Event()
    sent: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    received = 0

    async def receive() -> dict[str, Any]:
        nonlocal received
        received += 1
        if received == 1:
            return {"type": "http.request", "body": request_body, "more_body": False}
        await left.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.put_nowait(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(request_body)).encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    app = asyncio.create_task(gw.app(scope, receive, send))  # type: ignore[arg-type]
    try:
        start = await asyncio.wait_for(sent.get(), WAIT_S)
        assert (start["type"], start["status"]) == ("http.response.start", 200)
        streamed = b""
        while b"Hello" not in streamed:
            streamed += (await asyncio.wait_for(sent.get(), WAIT_S))["body"]
        assert await gw.session_keys(gw.sid)
        left.set()
        await asyncio.wait_for(app, WAIT_S)
        assert await gw.dropped(gw.sid)
        assert gw.decoder.cancels == [(gw.rid, "client_disconnected")]
        rest = b"".join(sent.get_nowait().get("body", b"") for _ in range(sent.qsize()))
        assert b"[DONE]" not in streamed + rest
    finally:
        app.cancel()


# --- batch lines (completion.start directly) --------------------------------------------------------


async def test_batch_line_outlives_its_reader_and_a_later_gateway_attaches_to_it(gw: Gateway):
    """A detached completion (a batch line) left by its reader keeps its job and conversation for the
    gateway that takes the batch over; that one starts it `stored` and follows the same response."""
    body = ChatCompletionRequest.model_validate(gw.body(messages=[{"role": "user", "content": "Line one"}]))
    ids = completion.Ids.new()
    gw.decoder.hold = True
    first = await completion.start(gw.services, body, ids, priority="batch", detached=True)
    reader = asyncio.create_task(first.whole())
    await asyncio.wait_for(gw.decoder.holding.wait(), WAIT_S)
    reader.cancel()
    await asyncio.gather(reader, return_exceptions=True)
    await asyncio.sleep(0.05)  # a clean-up, had one been started, would have run by now
    assert gw.decoder.cancels == []
    assert await gw.session_keys(ids.session_id)

    gw.decoder.hold = False
    second = await completion.start(gw.services, body, ids, priority="batch", stored=True, detached=True)
    status, answer = await second.whole()
    assert (status, answer["choices"][0]["message"]["content"]) == (200, "Hello world")
    assert gw.decoder.flags == [(False, True), (True, True)]
    assert [r.response_id for r in gw.decoder.requests] == [ids.response_id, ids.response_id]
    assert gw.decoder.conversations == [[("user", "Line one")]] * 2
    assert await gw.dropped(ids.session_id)
