"""Cancel and disconnect stop generation within 0.5 s, measured by tokens produced afterwards."""

import asyncio
import time

import websockets

from tests.helpers import Realtime, Stack, realtime, user_message

LONG = "Count from 1 to 400, one number per line, with no other text."


def _redis_ms(stack: Stack) -> int:
    seconds, micros = stack.redis().time()
    return int(seconds) * 1000 + int(micros) // 1000


def _tokens_after(stack: Stack, response_id: str, t_ms: int) -> tuple[int, float, int]:
    """Tokens appended after t_ms, the token rate before it, and ms from t to the last delta."""
    import json

    entries = stack.redis().xrange(f"mmtest:response:{response_id}:events")
    deltas = [(int(eid.split("-")[0]), json.loads(f["m"])) for eid, f in entries]
    deltas = [(ms, m) for ms, m in deltas if m["type"] == "delta"]
    before = [(ms, len(m["token_ids"])) for ms, m in deltas if ms <= t_ms]
    after = [(ms, len(m["token_ids"])) for ms, m in deltas if ms > t_ms]
    span_s = max((before[-1][0] - before[0][0]) / 1000, 1e-3)
    rate = sum(n for _, n in before[1:]) / span_s
    last = after[-1][0] - t_ms if after else 0
    return sum(n for _, n in after), rate, last


async def _start_long_reply(rt: Realtime) -> str:
    await rt.send(user_message(LONG))
    await rt.send({"type": "response.create"})
    response_id = ""
    deltas = 0
    while deltas < 15:
        event = await rt.next()
        if event["type"] == "response.created":
            response_id = event["response"]["id"]
        deltas += event["type"] == "response.output_text.delta"
    return response_id


async def test_response_cancel_stops_the_decoder_quickly(stack: Stack):
    async with realtime(stack.ws) as rt:
        rid = await _start_long_reply(rt)
        t_cancel = _redis_ms(stack)
        sent = time.monotonic()
        await rt.send({"type": "response.cancel", "response_id": rid})
        done = (await rt.until("response.done"))[-1]
        elapsed = time.monotonic() - sent
        assert done["response"]["status"] == "cancelled"
        assert done["response"]["status_details"]["reason"] == "client_cancelled"
        after, rate, last_ms = _tokens_after(stack, rid, t_cancel)
        assert last_ms < 500, f"a token was produced {last_ms} ms after the cancel"
        assert after <= rate * 0.5 + 2, (after, rate)
        assert elapsed < 1.5
        # The session goes on: the cancelled reply stays in the conversation and a new turn works.
        text, done = await rt.ask("Say hello.", max_output_tokens=10)
        assert done["response"]["status"] in ("completed", "incomplete")


async def test_disconnect_stops_the_decoder(stack: Stack):
    async with websockets.connect(stack.ws) as ws:
        rt = Realtime(ws)
        session_id = (await rt.next())["session"]["id"]
        rid = await _start_long_reply(rt)
        t_close = _redis_ms(stack)
    state_key = f"mmtest:response:{rid}"
    for _ in range(30):
        if stack.redis().hget(state_key, "status") == "cancelled":
            break
        await asyncio.sleep(0.1)
    assert stack.redis().hget(state_key, "status") == "cancelled"
    after, rate, last_ms = _tokens_after(stack, rid, t_close)
    assert last_ms < 500 and after <= rate * 0.5 + 2, (after, rate, last_ms)
    # The session's state is gone with its socket.
    assert stack.redis().keys(f"mmtest:session:{session_id}*") == []
