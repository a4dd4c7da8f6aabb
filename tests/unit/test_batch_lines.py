"""Reading a batch input file: each line fails alone; only an empty or oversized file fails the batch."""

import json

from gateway.batch.lines import BadLine, Line, TranscriptionBody, parse
from gateway.http.chat_schema import ChatCompletionRequest

CHAT = "/v1/chat/completions"


def line(custom_id: str, url: str = CHAT, **body: object) -> bytes:
    body = body or {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": body}).encode()


def test_good_and_bad_lines_side_by_side():
    data = b"\n".join(
        [
            line("a"),
            b"{oops",
            b"[1, 2]",
            line("a"),
            line("b", url="/v1/embeddings"),
            json.dumps({"custom_id": "c", "method": "GET", "url": CHAT, "body": {}}).encode(),
            line("d", model="m", messages=[]),
            line("e", model="m", messages=[{"role": "user", "content": "x"}], stream=True),
            json.dumps({"method": "POST", "url": CHAT, "body": {}}).encode(),
            line("f"),
        ]
    )
    parsed = parse(data + b"\n\n", CHAT, max_lines=100)
    assert not parsed.fatal
    kinds = [(item.index, type(item).__name__, getattr(item, "code", None)) for item in parsed.lines]
    assert kinds == [
        (0, "Line", None),
        (1, "BadLine", "invalid_json"),
        (2, "BadLine", "invalid_json"),
        (3, "BadLine", "duplicate_custom_id"),
        (4, "BadLine", "invalid_url"),
        (5, "BadLine", "invalid_method"),
        (6, "BadLine", "invalid_value"),
        (7, "BadLine", "invalid_body"),
        (8, "BadLine", "missing_custom_id"),
        (9, "Line", None),
    ]
    first = parsed.lines[0]
    assert isinstance(first, Line) and isinstance(first.body, ChatCompletionRequest)
    bad = parsed.lines[4]
    assert isinstance(bad, BadLine) and bad.custom_id == "b" and bad.message.startswith("Line 5:")


def test_transcription_lines():
    parsed = parse(
        line("t", url="/v1/audio/transcriptions", model="whisper-1", file="AAAA"), "/v1/audio/transcriptions", 10
    )
    item = parsed.lines[0]
    assert isinstance(item, Line) and isinstance(item.body, TranscriptionBody) and item.body.response_format == "json"


def test_empty_or_oversized_files_fail_the_batch():
    assert [e.code for e in parse(b"\n \n", CHAT, 10).fatal] == ["empty_file"]
    assert [e.code for e in parse(b"\n".join([line(str(n)) for n in range(11)]), CHAT, 10).fatal] == [
        "too_many_requests"
    ]


def test_a_line_nested_too_deeply_fails_alone():
    parsed = parse(b"[" * 100_000 + b"\n" + b'{"a":' * 100_000 + b"\n" + line("a"), CHAT, max_lines=10)
    assert not parsed.fatal
    assert [(type(item).__name__, getattr(item, "code", None)) for item in parsed.lines] == [
        ("BadLine", "invalid_json"),
        ("BadLine", "invalid_json"),
        ("Line", None),
    ]
