"""One batch line, run through the same code as its HTTP route, at batch priority.

The ids of a line's conversation, response and upload are made from the batch id, the line and the
attempt, so a gateway taking over a batch finds work an earlier gateway started and follows it.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from gateway.batch.lines import Line, TranscriptionBody
from gateway.http import completion, transcriptions
from gateway.http.chat_schema import ChatCompletionRequest
from gateway.http.errors import error_body
from gateway.http.speech import SpeechBody, check_speech, failure_of, speak
from gateway.services import Services
from gateway.speech.containers import whole_file
from shared.errors import ErrorInfo, InvalidRequest, MMStreamError, TooLarge, error_info
from shared.messages import TranscribeRequest

# The id of a line's job: its response, its transcription, or (speech) the flag its pieces stop at.
_PREFIX: dict[type, str] = {ChatCompletionRequest: "chatcmpl", TranscriptionBody: "trn", SpeechBody: "tts"}
# Failures worth another attempt: no worker came, one died, or an encoder did not answer in time.
_TRANSIENT_STATUS = frozenset({500, 502, 503, 504})


@dataclass(frozen=True)
class Outcome:
    status_code: int
    body: dict[str, Any]
    request_id: str
    retry: bool = False  # a transient failure (or cancelled, not by the batch): try the line again
    cancelled: bool = False  # the work was cancelled before it ended


def _tag(batch_id: str, line: Line, attempt: int) -> str:
    return f"{batch_id}_{line.index}_{attempt}"


async def cancel_line(services: Services, batch_id: str, line: Line, attempt: int, reason: str) -> None:
    """Stop the job an attempt at a line runs (its response, or its transcription)."""
    prefix = _PREFIX[type(line.body)]
    await services.decoder.cancel(f"{prefix}_{_tag(batch_id, line, attempt)}", reason)


async def run_line(services: Services, batch_id: str, line: Line, attempt: int, *, follow: bool) -> Outcome:
    """Run (or, with `follow`, continue following) one attempt at a line."""
    tag = _tag(batch_id, line, attempt)
    try:
        if isinstance(line.body, ChatCompletionRequest):
            return await _chat(services, line.body, tag, follow)
        if isinstance(line.body, SpeechBody):
            return await _speech(services, line.body, tag)
        return await _transcription(services, line.body, tag, follow)
    except MMStreamError as exc:
        info = error_info(exc)
        return Outcome(info.status, error_body(info), tag, retry=info.status in _TRANSIENT_STATUS)


async def _chat(services: Services, body: ChatCompletionRequest, tag: str, follow: bool) -> Outcome:
    ids = completion.Ids(session_id=f"chat_{tag}", response_id=f"chatcmpl_{tag}")
    stored = follow and bool(await services.redis.exists(services.keys.response(ids.response_id)))
    if follow and not stored:  # a driver stopped between storing messages and starting the response
        await services.sessions.forget(ids.session_id)
    answer = await completion.start(
        services, body, ids, priority="batch", require_media=True, stored=stored, detached=True
    )
    status, payload = await answer.whole()
    final = answer.final
    if final is not None and final.status == "cancelled" and final.reason != "stop_sequence":
        return _cancelled(ids.response_id)
    return Outcome(status, payload, ids.response_id, retry=status in _TRANSIENT_STATUS)


async def _transcription(services: Services, body: TranscriptionBody, tag: str, follow: bool) -> Outcome:
    s = services.settings
    if body.model != s.asr_served_name and body.model not in s.asr_model_aliases:
        raise InvalidRequest(f"The model '{body.model}' does not exist; use '{s.asr_served_name}'.", param="model")
    job_id = f"trn_{tag}"
    blob_key = services.keys.blob(f"blob_{tag}")
    following = follow and bool(await services.redis.exists(services.keys.response(job_id)))
    if not following:
        await services.redis.set(blob_key, _audio(body.file, s.max_upload_bytes), ex=s.session_ttl_s)
    job = TranscribeRequest(
        job_id=job_id,
        blob_key=blob_key,
        encoding="file",
        language=body.language,
        prompt=body.prompt,
        word_timestamps=body.response_format == "verbose_json" and "word" in body.timestamp_granularities,
    )
    final, segments = await transcriptions.collect(services, job, "batch", attach=following, detached=True)
    if final.status == "completed":
        return Outcome(200, transcriptions.json_body(body.response_format == "verbose_json", final, segments), job_id)
    if final.status == "cancelled":
        return _cancelled(job_id)
    status, payload = transcriptions.failure(final)
    return Outcome(status, payload, job_id, retry=status in _TRANSIENT_STATUS)


async def _speech(services: Services, body: SpeechBody, tag: str) -> Outcome:
    """Speak the line's input whole (a gateway taking over says it again: its pieces are not kept);
    the body holds the file, base64, in `response_format`."""
    check_speech(body, services.settings)
    job_id = f"tts_{tag}"
    stream = speak(services, body, job_id, priority="batch")
    pcm: list[bytes] = []
    try:
        async for chunk in stream.chunks():
            pcm.append(base64.b64decode(chunk.audio))
            if await services.responses.cancel_requested(job_id):
                return _cancelled(job_id)
    finally:
        await stream.stop()
    if (info := failure_of(stream)) is not None:
        return Outcome(info.status, error_body(info), job_id, retry=info.status in _TRANSIENT_STATUS)
    audio = b"".join(pcm)
    data = whole_file(body.response_format, audio)
    seconds = len(audio) / 2 / stream.spoken.rate
    payload = {"object": "audio.speech", "format": body.response_format, "duration_s": round(seconds, 3)}
    return Outcome(200, {**payload, "data": base64.b64encode(data).decode()}, job_id)


def _cancelled(request_id: str) -> Outcome:
    info = ErrorInfo("server_error", "server_error", "The request was cancelled before it ended.", None, 503)
    return Outcome(info.status, error_body(info), request_id, retry=True, cancelled=True)


def _audio(value: str, limit: int) -> bytes:
    data = value.split(",", 1)[1] if value.startswith("data:") else value
    if len(data) > limit * 4 // 3 + 4:
        raise TooLarge(f"Audio larger than {limit} bytes.", param="file")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest("'file' is not valid base64.", code="invalid_audio", param="file") from exc
