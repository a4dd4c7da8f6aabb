"""`POST /v1/audio/transcriptions`, OpenAI-compatible.

The upload (at most `max_upload_bytes`) is stored in Redis for a short while and an audio worker
decodes it with PyAV and transcribes it; segments come back on a job stream. `stream=true` relays
them as server-sent `transcript.text.delta` events, ending with `transcript.text.done`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from gateway.http.errors import documented, error_body
from gateway.services import Services
from shared.errors import NotFound, job_error, status_for
from shared.messages import Priority, TranscribeRequest, TranscriptionFinal, TranscriptSegment, new_id

router = APIRouter(responses=documented(401, 429))

ResponseFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]
_BLOB_TTL_S = 600


class TranscriptionForm(BaseModel):
    """The multipart form of a transcription request (OpenAI's field names)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    file: UploadFile = Field(description="The audio: wav, mp3, flac, ogg/opus, webm/opus, ...")
    model: str
    language: str | None = Field(None, max_length=16)
    prompt: str | None = Field(None, max_length=4000)
    response_format: ResponseFormat = "json"
    temperature: float = Field(0.0, ge=0, le=1)
    timestamp_granularities: list[Literal["word", "segment"]] = Field(
        default_factory=list, alias="timestamp_granularities[]"
    )
    stream: bool = False


@router.post(
    "/v1/audio/transcriptions",
    response_model=None,
    responses={
        200: {
            "description": "The transcript in the `response_format` asked for, or with `stream` true "
            "`transcript.text.delta` events.",
            "content": {"application/json": {}, "text/plain": {}, "text/vtt": {}, "text/event-stream": {}},
        },
        **documented(400, 404, 413, 503),
    },
)
async def create_transcription(
    request: Request, form: Annotated[TranscriptionForm, Form(media_type="multipart/form-data")]
) -> Response:
    services: Services = request.app.state.services
    s = services.settings
    if form.model != s.asr_served_name and form.model not in s.asr_model_aliases:
        raise NotFound(
            f"The model '{form.model}' does not exist; use '{s.asr_served_name}'.",
            code="model_not_found",
            param="model",
        )
    data = await form.file.read()
    blob_key = services.keys.blob(new_id("blob"))
    await services.redis.set(blob_key, data, ex=_BLOB_TTL_S)
    job = TranscribeRequest(
        job_id=new_id("trn"),
        blob_key=blob_key,
        encoding="file",
        language=form.language,
        prompt=form.prompt,
        temperature=form.temperature,
        word_timestamps=form.response_format == "verbose_json" and "word" in form.timestamp_granularities,
    )
    if form.stream:
        return StreamingResponse(_sse(services.transcriptions.transcribe(job)), media_type="text/event-stream")
    final, segments = await collect(services, job)
    if final.status != "completed":
        status, body = failure(final)
        return JSONResponse(body, status_code=status)
    return _render(form.response_format, final, segments)


async def collect(
    services: Services,
    job: TranscribeRequest,
    priority: Priority = "interactive",
    *,
    attach: bool = False,
    detached: bool = False,
) -> tuple[TranscriptionFinal, list[TranscriptSegment]]:
    """Run a transcription to its end: the final event and the segments before it."""
    segments: list[TranscriptSegment] = []
    final = TranscriptionFinal(status="failed", error_code="server_error", error_message="No result.")
    async for event in services.transcriptions.transcribe(job, priority, attach=attach, detached=detached):
        if isinstance(event, TranscriptSegment):
            segments.append(event)
        elif isinstance(event, TranscriptionFinal):
            final = event
    return final, segments


def failure(final: TranscriptionFinal) -> tuple[int, dict[str, Any]]:
    """A failed transcription as (HTTP status, OpenAI error object)."""
    code = final.error_code
    param = "file" if status_for(code or "server_error") == 400 else None
    info = job_error(code, final.error_message, "The transcription failed.", param)
    return info.status, error_body(info)


async def _sse(events: AsyncIterator[Any]) -> AsyncIterator[str]:
    async for event in events:
        if isinstance(event, TranscriptSegment):
            yield _event({"type": "transcript.text.delta", "delta": event.text})
        elif isinstance(event, TranscriptionFinal):
            if event.status == "completed":
                usage = {"type": "duration", "seconds": round(event.duration, 3)}
                yield _event({"type": "transcript.text.done", "text": event.text, "usage": usage})
            else:
                yield _event(
                    {
                        "type": "error",
                        "error": {
                            "message": event.error_message,
                            "code": event.error_code,
                            "type": "invalid_request_error",
                            "param": None,
                        },
                    }
                )


def _event(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload)}\n\n"


def _render(fmt: ResponseFormat, final: TranscriptionFinal, segments: list[TranscriptSegment]) -> Response:
    if fmt == "text":
        return PlainTextResponse(final.text + "\n")
    if fmt == "srt":
        return PlainTextResponse(_subtitles(segments, srt=True))
    if fmt == "vtt":
        return PlainTextResponse("WEBVTT\n\n" + _subtitles(segments, srt=False), media_type="text/vtt")
    return JSONResponse(json_body(fmt == "verbose_json", final, segments))


def json_body(verbose: bool, final: TranscriptionFinal, segments: list[TranscriptSegment]) -> dict[str, Any]:
    """The `json` or `verbose_json` answer."""
    usage = {"type": "duration", "seconds": round(final.duration, 3)}
    if not verbose:
        return {"text": final.text, "usage": usage}
    body: dict[str, Any] = {
        "task": "transcribe",
        "language": "english" if final.language == "en" else final.language,
        "duration": round(final.duration, 3),
        "text": final.text,
        "usage": usage,
        "segments": [
            {
                "id": s.id,
                "seek": 0,
                "start": s.start,
                "end": s.end,
                "text": s.text,
                "tokens": [],
                "temperature": 0.0,
                "avg_logprob": s.avg_logprob,
                "compression_ratio": s.compression_ratio,
                "no_speech_prob": s.no_speech_prob,
            }
            for s in segments
        ],
    }
    words = [w.model_dump() for s in segments for w in s.words or []]
    if words:
        body["words"] = words
    return body


def _subtitles(segments: list[TranscriptSegment], *, srt: bool) -> str:
    sep = "," if srt else "."
    blocks = []
    for n, s in enumerate(segments, 1):
        timing = f"{_clock(s.start, sep)} --> {_clock(s.end, sep)}"
        blocks.append(f"{n}\n{timing}\n{s.text.strip()}\n" if srt else f"{timing}\n{s.text.strip()}\n")
    return "\n".join(blocks)


def _clock(seconds: float, sep: str) -> str:
    ms = round(seconds * 1000)
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    sec, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{sec:02d}{sep}{ms:03d}"
