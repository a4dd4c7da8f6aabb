import pytest
from pydantic import ValidationError

from shared.errors import InvalidRequest, error_info
from shared.messages import (
    CLIENT_EVENT_TYPES,
    ConversationItemCreate,
    ResponseCreate,
    ResponseFinal,
    Session,
    SessionPatch,
    SessionUpdate,
    TokenDelta,
    parse_client_event,
    stream_event_adapter,
)


def test_item_create_parses_and_ignores_unknown_fields():
    event = parse_client_event(
        {
            "type": "conversation.item.create",
            "event_id": "e1",
            "future_field": 1,
            "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        }
    )
    assert isinstance(event, ConversationItemCreate)
    assert event.item.text() == "hi"
    assert event.item.id is None


def test_response_create_without_body_gets_defaults():
    event = parse_client_event({"type": "response.create"})
    assert isinstance(event, ResponseCreate)
    assert event.response.conversation == "auto"


def test_every_listed_type_has_a_model():
    for kind in CLIENT_EVENT_TYPES:
        try:
            parse_client_event({"type": kind})
        except ValidationError as exc:
            assert all(e["type"] != "union_tag_invalid" for e in exc.errors())


def test_missing_field_maps_to_missing_required_parameter():
    with pytest.raises(ValidationError) as info:
        parse_client_event({"type": "conversation.item.create"})
    err = error_info(info.value)
    assert (err.code, err.param, err.status) == ("missing_required_parameter", "item", 400)


def test_wrong_type_maps_to_invalid_value_with_param():
    with pytest.raises(ValidationError) as info:
        parse_client_event({"type": "session.update", "session": {"temperature": "hot"}})
    err = error_info(info.value)
    assert err.code == "invalid_value"
    assert err.param == "session.temperature"


def test_unexpected_exception_is_generic_for_the_client():
    err = error_info(RuntimeError("secret internals at /srv/x"))
    assert err.code == "server_error"
    assert "secret" not in err.message


def test_invalid_request_keeps_its_code():
    err = error_info(InvalidRequest("no", code="response_cancel_not_active"))
    assert (err.type, err.code, err.status) == ("invalid_request_error", "response_cancel_not_active", 400)


def test_session_merge_only_changes_given_fields():
    session = Session(id="sess_1", model="m", temperature=0.7, instructions="be brief")
    patch = SessionUpdate.model_validate({"type": "session.update", "session": {"temperature": 0}}).session
    merged = session.merged(patch)
    assert merged.temperature == 0 and merged.instructions == "be brief"
    assert session.merged(SessionPatch(model="other")).model == "m"


def test_session_refuses_audio_output():
    with pytest.raises(ValidationError):
        SessionPatch.model_validate({"output_modalities": ["audio"]})


def test_stream_events_round_trip():
    for event in (TokenDelta(text="Pa", token_ids=[1, 2]), ResponseFinal(status="cancelled", reason="x")):
        assert stream_event_adapter.validate_json(event.model_dump_json()) == event
