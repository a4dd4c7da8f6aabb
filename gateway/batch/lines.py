"""A batch input file, read line by line: `{custom_id, method, url, body}` per line (OpenAI's JSONL).

A line that cannot be read fails alone, with a reason; only a file with no request at all, or too
many, fails the whole batch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.http.chat_schema import ChatCompletionRequest
from gateway.http.speech import SpeechBody
from shared.errors import ErrorCode, error_info
from shared.messages import BatchEndpoint, BatchError

_MAX_CUSTOM_ID = 512


class TranscriptionBody(BaseModel):
    """A `/v1/audio/transcriptions` line's body: the form fields as JSON, the audio as base64 or a data URL."""

    model_config = ConfigDict(extra="ignore")

    model: str
    file: str = Field(description="base64 audio (wav, mp3, flac, ogg, ...), or a data: URL of it")
    language: str | None = Field(None, max_length=16)
    prompt: str | None = Field(None, max_length=4000)
    response_format: Literal["json", "verbose_json"] = "json"
    temperature: float = Field(0.0, ge=0, le=1)
    timestamp_granularities: list[Literal["word", "segment"]] = Field(default_factory=list)


Body = ChatCompletionRequest | TranscriptionBody | SpeechBody


@dataclass(frozen=True)
class Line:
    index: int  # 0-based position in the file
    custom_id: str
    body: Body


@dataclass(frozen=True)
class BadLine:
    index: int
    custom_id: str | None
    code: ErrorCode
    message: str


@dataclass(frozen=True)
class Parsed:
    lines: list[Line | BadLine]
    fatal: list[BatchError]  # non-empty: the batch fails as a whole


def parse(data: bytes, endpoint: BatchEndpoint, max_lines: int) -> Parsed:
    texts = [t for t in data.split(b"\n")]
    while texts and not texts[-1].strip():
        texts.pop()
    if not texts:
        return Parsed([], [BatchError(code="empty_file", message="The input file holds no requests.")])
    if len(texts) > max_lines:
        message = f"The input file holds {len(texts)} requests; at most {max_lines} are allowed."
        return Parsed([], [BatchError(code="too_many_requests", message=message)])
    seen: set[str] = set()
    lines = [_parse_line(n, raw, endpoint, seen) for n, raw in enumerate(texts)]
    return Parsed(lines, [])


class _Refused(Exception):
    def __init__(self, code: ErrorCode, message: str, custom_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.custom_id = custom_id


def _parse_line(n: int, raw: bytes, endpoint: BatchEndpoint, seen: set[str]) -> Line | BadLine:
    try:
        return _read_line(n, raw, endpoint, seen)
    except _Refused as refused:
        return BadLine(n, refused.custom_id, refused.code, f"Line {n + 1}: {refused.message}")


def _read_line(n: int, raw: bytes, endpoint: BatchEndpoint, seen: set[str]) -> Line:
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _Refused("invalid_json", f"not JSON ({exc}).") from exc
    except RecursionError as exc:  # escaping, it failed the whole batch, again at every scan
        raise _Refused("invalid_json", "nested too deeply.") from exc
    if not isinstance(obj, dict):
        raise _Refused("invalid_json", "not a JSON object.")
    custom_id = obj.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id or len(custom_id) > _MAX_CUSTOM_ID:
        raise _Refused("missing_custom_id", "needs a 'custom_id' string.")
    if custom_id in seen:
        raise _Refused("duplicate_custom_id", f"custom_id '{custom_id}' is used by an earlier line.", custom_id)
    seen.add(custom_id)
    if obj.get("method", "POST") != "POST":
        raise _Refused("invalid_method", "the method must be POST.", custom_id)
    if obj.get("url") != endpoint:
        raise _Refused("invalid_url", f"the url must be the batch's endpoint, {endpoint}.", custom_id)
    body = obj.get("body")
    if not isinstance(body, dict):
        raise _Refused("invalid_body", "needs a 'body' object.", custom_id)
    return Line(n, custom_id, _body(endpoint, body, custom_id))


def _body(endpoint: BatchEndpoint, body: dict[str, object], custom_id: str) -> Body:
    try:
        if endpoint == "/v1/audio/transcriptions":
            return TranscriptionBody.model_validate(body)
        model = SpeechBody if endpoint == "/v1/audio/speech" else ChatCompletionRequest
        parsed: ChatCompletionRequest | SpeechBody = model.model_validate(body)
    except ValidationError as exc:
        info = error_info(exc)
        raise _Refused(info.code, info.message, custom_id) from exc
    if isinstance(parsed, SpeechBody) and parsed.stream_format != "audio":
        raise _Refused("invalid_body", "'stream_format' must be 'audio' in a batch.", custom_id)
    if isinstance(parsed, ChatCompletionRequest) and parsed.stream:
        raise _Refused("invalid_body", "'stream' is not allowed in a batch.", custom_id)
    return parsed
