import ast
from pathlib import Path
from typing import Literal, get_args

import pytest
from pydantic import TypeAdapter, ValidationError

from shared.errors import _STATUS, ErrorCode, InvalidRequest, error_info, status_for
from shared.messages import (
    CLIENT_EVENT_MODELS,
    CLIENT_EVENT_TYPES,
    ClientEvent,
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
    assert event.item.id.startswith("item_")  # omitted: a new one


def test_response_create_without_body_gets_defaults():
    event = parse_client_event({"type": "response.create"})
    assert isinstance(event, ResponseCreate)
    assert event.response.conversation == "auto"


def test_client_event_types_are_the_union_members():
    # Read independently of the derivation: the discriminator mapping pydantic builds for the union.
    mapping = TypeAdapter(ClientEvent).json_schema()["discriminator"]["mapping"]
    assert set(mapping) == CLIENT_EVENT_TYPES
    members = get_args(get_args(ClientEvent)[0])
    assert set(CLIENT_EVENT_MODELS.values()) == set(members)
    for kind, model in CLIENT_EVENT_MODELS.items():
        assert model.model_fields["type"].annotation == Literal[kind]


def test_every_error_code_has_a_status():
    codes = set(get_args(ErrorCode))
    assert set(_STATUS) == codes
    assert all(100 <= status_for(code) < 600 for code in codes)
    # The statuses failed jobs have always had.
    assert (status_for("invalid_audio"), status_for("timeout"), status_for("server_error")) == (400, 503, 500)


def _strings(node: ast.expr | None) -> list[str]:
    """The string constants an expression may evaluate to (both sides of `a if c else b`, `a or b`)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        return _strings(node.body) + _strings(node.orelse)
    if isinstance(node, ast.BoolOp):
        return [s for value in node.values for s in _strings(value)]
    return []


def _codes_in(path: Path) -> list[str]:
    """The error codes a module writes: `code=`/`error_code=` arguments, `code = ...` assignments,
    `"code": ...` dict entries, and the first argument of the batch's `_Refused`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.keyword) and node.arg in ("code", "error_code"):
            found += _strings(node.value)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id in ("code", "error_code") for t in targets):
                found += _strings(node.value)
        elif isinstance(node, ast.Dict):
            found += [
                s for k, v in zip(node.keys, node.values, strict=True) if _strings(k) == ["code"] for s in _strings(v)
            ]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "_Refused":
            found += _strings(node.args[0])
    return found


def test_every_error_code_written_is_an_error_code():
    # pydantic refuses an unknown code at run time; this finds it before (mypy does not check model arguments).
    root = Path(__file__).resolve().parents[2]
    written = {
        (str(path.relative_to(root)), code)
        for package in ("shared", "gateway", "workers", "cli")
        for path in (root / package).rglob("*.py")
        for code in _codes_in(path)
    }
    assert len(written) > 30  # the scan still sees the codes
    assert {(path, code) for path, code in written if code not in get_args(ErrorCode)} == set()


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


def test_session_takes_audio_output_in_ga_and_beta_shapes():
    session = Session(id="sess_1", model="m", temperature=0.7)
    ga = SessionPatch.model_validate(
        {
            "output_modalities": ["audio"],
            "audio": {"output": {"voice": "marin", "speed": 1.2, "format": {"type": "audio/pcmu"}}},
        }
    )
    merged = session.merged(ga)
    assert merged.output_modalities == ["audio"]
    assert (merged.audio.output.voice, merged.audio.output.speed) == ("marin", 1.2)
    assert merged.audio.output.format.type == "audio/pcmu"
    assert merged.audio.input == session.audio.input  # input settings untouched
    beta = session.merged(SessionPatch.model_validate({"modalities": ["text", "audio"], "voice": "ash"}))
    assert beta.output_modalities == ["audio"] and beta.audio.output.voice == "ash"
    beta = session.merged(SessionPatch.model_validate({"output_audio_format": "g711_alaw"}))
    assert beta.audio.output.format.type == "audio/pcma" and beta.output_modalities == ["text"]
    with pytest.raises(ValidationError):
        SessionPatch.model_validate({"output_modalities": ["video"]})
    with pytest.raises(ValidationError):
        SessionPatch.model_validate({"audio": {"output": {"speed": 3.0}}})


def test_stream_events_round_trip():
    for event in (TokenDelta(text="Pa", token_ids=[1, 2]), ResponseFinal(status="cancelled", reason="x")):
        assert stream_event_adapter.validate_json(event.model_dump_json()) == event
