"""Property-based fuzzing of the websocket protocol (hypothesis): every event, however malformed, is
answered or ignored as the protocol says, never with a server error, and the session stays usable."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import connect

from shared.messages import CLIENT_EVENT_TYPES
from tests.helpers import Stack

# Every client event but `response.create`, which would start generations on the shared decoder.
TYPES = sorted(CLIENT_EVENT_TYPES - {"response.create"})
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
content_part = st.fixed_dictionaries(
    {"type": st.sampled_from(["input_text", "input_audio", "input_image", "output_text", "bogus"])},
    optional={"text": json_values, "audio": st.text(max_size=64), "image_url": st.text(max_size=64)},
)
item = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["message", "function_call", "x"]),
        "role": st.sampled_from(["user", "assistant", "system", "x"]),
    },
    optional={"content": st.lists(content_part, max_size=3) | json_values, "id": json_values},
)
known_event = st.fixed_dictionaries(
    {"type": st.sampled_from(TYPES)},
    optional={
        "session": st.dictionaries(
            st.sampled_from(["type", "instructions", "temperature", "audio", "fusion"]), json_values
        ),
        "item": item | json_values,
        "item_id": json_values,
        "audio": st.text(max_size=80) | json_values,
        "event_id": json_values,
        "previous_item_id": json_values,
    },
)
frames = st.one_of(
    known_event.map(json.dumps),
    st.dictionaries(st.text(max_size=12), json_values, max_size=5).map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=200),
)


def _until_probe(ws: Any, probe: str) -> list[dict[str, Any]]:
    """Events up to the answer to our probe: proof that the session still reads and answers in order."""
    events = []
    while True:
        event = json.loads(ws.recv(timeout=30))
        events.append(event)
        if event["type"] == "error" and event["error"].get("event_id") == probe:
            return events


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(frames, min_size=1, max_size=5))
def test_fuzzed_events_never_break_the_session(stack: Stack, batch: list[str]):
    with connect(stack.ws, max_size=None) as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "session.created"
        for frame in batch:
            ws.send(frame)
        probe = "probe-after-fuzz"
        ws.send(json.dumps({"type": "conversation.item.retrieve", "item_id": "no-such-item", "event_id": probe}))
        events = _until_probe(ws, probe)
        server_errors = [e for e in events if e["type"] == "error" and e["error"]["code"] == "server_error"]
        assert not server_errors, (batch, server_errors)
        for event in events:
            if event["type"] == "error":
                assert event["error"]["message"] and event["error"]["type"] == "invalid_request_error", event
