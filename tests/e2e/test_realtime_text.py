"""Text turns over /v1/realtime against a real gateway, Celery worker, Redis and GGUF model."""

import json

import pytest

from tests.helpers import Stack, http_status, realtime, user_message


async def test_capital_of_france_streams_token_by_token(stack: Stack):
    async with realtime(stack.ws) as rt:
        await rt.send(user_message("What is the capital of France? Answer in one short sentence."))
        await rt.send({"type": "response.create"})
        events = await rt.until("response.done")
    kinds = [e["type"] for e in events]
    deltas = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    assert "Paris" in "".join(deltas)
    assert len(deltas) > 3, "the reply arrives in pieces, not at once"
    order = [
        "conversation.item.added",
        "response.created",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.done",
    ]
    positions = [kinds.index(k) for k in order]
    assert positions == sorted(positions), kinds
    done = events[-1]["response"]
    assert done["status"] == "completed"
    assert done["usage"]["output_tokens"] > 0 and done["usage"]["input_tokens"] > 0
    assert done["output"][0]["content"][0] == {"type": "output_text", "text": "".join(deltas)}


async def test_conversation_carries_over_and_instructions_apply(stack: Stack):
    async with realtime(stack.ws) as rt:
        await rt.send(
            {
                "type": "session.update",
                "session": {
                    "type": "realtime",
                    "instructions": "You are a helpful assistant. Keep answers very short.",
                },
            }
        )
        await rt.until("session.updated")
        await rt.ask("My name is Zephyrine. Remember it.")
        text, done = await rt.ask("What is my name?")
        assert "Zephyrine" in text
        assert done["response"]["usage"]["input_token_details"]["cached_tokens"] > 0, "history reused from KV"


async def test_max_output_tokens_ends_incomplete(stack: Stack):
    async with realtime(stack.ws) as rt:
        text, done = await rt.ask("Write a long story about a dragon.", max_output_tokens=5)
    assert done["response"]["status"] == "incomplete"
    assert done["response"]["status_details"]["reason"] == "max_output_tokens"
    assert done["response"]["usage"]["output_tokens"] == 5


async def test_second_response_create_is_refused_while_one_runs(stack: Stack):
    async with realtime(stack.ws) as rt:
        await rt.send(user_message("Count from 1 to 20."))
        await rt.send({"type": "response.create"})
        await rt.send({"type": "response.create", "event_id": "dup"})
        events = await rt.until("response.done")
    errors = [e for e in events if e["type"] == "error"]
    assert [e["error"]["code"] for e in errors] == ["conversation_already_has_active_response"]
    assert errors[0]["error"]["event_id"] == "dup"
    assert sum(e["type"] == "response.created" for e in events) == 1


@pytest.mark.parametrize(
    ("frame", "code", "param"),
    [
        ("{not json", "invalid_json", None),
        ("[1, 2]", "invalid_json", None),
        (json.dumps({"event_id": "x"}), "missing_required_parameter", "type"),
        (json.dumps({"type": "no.such.event"}), "unknown_event", "type"),
        (json.dumps({"type": "conversation.item.create"}), "missing_required_parameter", "item"),
        (
            json.dumps({"type": "session.update", "session": {"temperature": "warm"}}),
            "invalid_value",
            "session.temperature",
        ),
        (
            json.dumps(
                {
                    "type": "conversation.item.create",
                    "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": 5}]},
                }
            ),
            "invalid_value",
            None,
        ),
        (json.dumps({"type": "response.cancel"}), "response_cancel_not_active", None),
        (json.dumps({"type": "conversation.item.retrieve", "item_id": "nope"}), "item_not_found", "item_id"),
        ("[" * 100_000 + "]" * 100_000, "invalid_json", None),
        (json.dumps({"type": "conversation.item.create", "pad": "x" * (2 << 20)}), "message_too_large", None),
    ],
)
async def test_bad_events_get_an_error_and_the_session_goes_on(stack: Stack, frame: str, code: str, param):
    async with realtime(stack.ws) as rt:
        await rt.send(frame)
        error = (await rt.until("error"))[-1]["error"]
        assert error["code"] == code
        assert error["type"] == "invalid_request_error"
        if param:
            assert error["param"] == param
        assert error["message"]
        text, done = await rt.ask("Say OK.", max_output_tokens=8)
        assert done["response"]["status"] in ("completed", "incomplete")


async def test_binary_frames_are_refused_politely(stack: Stack):
    async with realtime(stack.ws) as rt:
        await rt.ws.send(b"\x00\x01")
        assert (await rt.until("error"))[-1]["error"]["code"] == "invalid_json"


async def test_items_can_be_retrieved_and_deleted(stack: Stack):
    async with realtime(stack.ws) as rt:
        await rt.send(
            {
                "type": "conversation.item.create",
                "item": {
                    "id": "item_mine",
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "hello"}],
                },
            }
        )
        added = await rt.until("conversation.item.done")
        assert {e["type"] for e in added} >= {"conversation.item.added", "conversation.item.created"}
        await rt.send({"type": "conversation.item.retrieve", "item_id": "item_mine"})
        assert (await rt.until("conversation.item.retrieved"))[-1]["item"]["content"][0]["text"] == "hello"
        await rt.send({"type": "conversation.item.delete", "item_id": "item_mine"})
        assert (await rt.until("conversation.item.deleted"))[-1]["item_id"] == "item_mine"


async def test_unknown_model_is_refused(stack: Stack):
    import websockets

    async with websockets.connect(stack.ws + "?model=gpt-9") as ws:
        error = json.loads(await ws.recv())
        assert error["type"] == "error" and error["error"]["code"] == "model_not_found"


def test_health_and_readiness(stack: Stack):
    assert http_status(f"{stack.http}/healthz") == 200
    assert http_status(f"{stack.http}/readyz") == 200
