"""What an audio worker process does with an `audio.stream` task: Redis around `StreamProcessor`.

One pass per session at a time, under a short per-session lock; the state and the events a pass
produces are written in one atomic step that first checks the state is still the one the pass
read. The side effects that come before it (the conversation item of an utterance, its transcript,
audio and encoder states) are idempotent, so a pass redone after a crash changes nothing twice.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis

from shared import media_tasks, recovery, streams
from shared.config import Settings
from shared.messages import (
    AudioCommitted,
    AudioLogEntry,
    AudioStreamRequest,
    EncoderStates,
    InputAudio,
    MessageItem,
    Session,
    SessionEvent,
    TranscribeRequest,
    TranscriptDone,
    TranscriptFailed,
    TranscriptionFinal,
    TranscriptSegment,
    TranscriptWord,
    audio_log_adapter,
)
from shared.metrics import TRANSCRIPTION_SECONDS, WORKER_ERRORS, timed
from shared.models import ResolvedModel, resolve_model
from shared.pcm import to_float, to_pcm16
from shared.redis_text import text as _text
from shared.response_state import ResponseStore
from shared.sessions import SessionWriter
from workers.audio.files import BadAudio, decode_file
from workers.audio.sentence_end import SentenceEndModel
from workers.audio.stream import Ended, StreamProcessor, StreamState, TurnConfig
from workers.audio.turn import EndOfTurnModel
from workers.audio.vad import SileroVad
from workers.audio.whisper import SAMPLE_RATE, WhisperASR
from workers.base import ModelService
from workers.presence import Presence

log = logging.getLogger(__name__)

# Bounds a live but hung holder; a dead one is noticed sooner, by its presence (shared/recovery.py).
_LOCK_MS = 30_000
_MAX_ENTRIES = 256

# KEYS: state, utterance audio, session events, input log.
# ARGV: version read, new state, 'append'|'set', audio bytes, trim-below id ('' = none), ttl, events...
_SAVE_STATE = f"""
local cur = redis.call('GET', KEYS[1])
local version = 0
if cur then version = cjson.decode(cur)['version'] end
if version ~= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[6])
if ARGV[3] == 'append' then redis.call('APPEND', KEYS[2], ARGV[4]) else redis.call('SET', KEYS[2], ARGV[4]) end
redis.call('EXPIRE', KEYS[2], ARGV[6])
for i = 7, #ARGV do redis.call('XADD', KEYS[3], 'MAXLEN', '~', {streams.MAXLEN}, '*', '{streams.FIELD}', ARGV[i]) end
redis.call('EXPIRE', KEYS[3], ARGV[6])
if ARGV[5] ~= '' then redis.call('XTRIM', KEYS[4], 'MINID', ARGV[5]) end
return 1
"""


@dataclass(frozen=True)
class _Models:
    asr: WhisperASR
    processor: StreamProcessor
    resolved: ResolvedModel


class AudioService(ModelService[_Models]):
    what = "speech model"

    def __init__(self, settings: Settings, client: redis.Redis, presence: Presence) -> None:
        super().__init__(settings, client, presence)
        self._writer = SessionWriter(
            client, self._keys, ttl_s=settings.session_ttl_s, max_items=settings.max_conversation_items
        )
        self._commit = client.register_script(_SAVE_STATE)
        self._jobs = ResponseStore(
            client, self._keys, lease_ms=int(settings.lease_ttl_s * 1000), ttl_s=settings.session_ttl_s
        )
        self._locks = recovery.Lock(client, _LOCK_MS)

    # --- lifecycle ------------------------------------------------------------------------------

    def _identity(self, models: _Models) -> dict[str, Any]:
        return {"model": models.resolved.spec, "sha256": models.resolved.sha256, "path": str(models.resolved.path)}

    def _build(self) -> _Models:
        s = self._settings
        resolved = self._resolve(s.asr_model, s.asr_model_sha256, "speech")
        asr = WhisperASR(resolved.path, threads=s.audio_threads, compute_type=s.asr_compute_type)
        turn_file = self._resolve(s.turn_model, s.turn_model_sha256, "end-of-turn")
        turns = EndOfTurnModel(turn_file.path, threads=s.audio_threads)
        sentences = None
        if s.turn_text_model:
            text_file = self._resolve(s.turn_text_model, s.turn_text_model_sha256, "sentence-end")
            sentences = SentenceEndModel(text_file.path, threads=s.audio_threads)
        return _Models(asr, StreamProcessor(asr, SileroVad(), turns, sentences), resolved)

    def _resolve(self, spec: str, sha256: str | None, role: str) -> ResolvedModel:
        s = self._settings
        resolved = resolve_model(
            spec, s.models_dir, allow_downloads=s.allow_downloads, expected_sha256=sha256, wheels_dir=s.wheels_dir
        )
        log.info("%s model %s, sha256 %s", role, resolved.path.name, resolved.sha256[:12])
        return resolved

    # --- audio.stream ---------------------------------------------------------------------------

    def stream(self, request: AudioStreamRequest) -> None:
        """Bring the session's transcription up to date with its input log."""
        sid = request.session_id
        lock = self._keys.audio_lock(sid)
        while True:
            token = self._presence.lock_token()
            taken = self._locks.take(lock, token)
            if taken == "taken_over":
                log.warning("session %s: the audio worker holding it is gone; taking over", sid)
            if taken == "held":
                # Another live worker is at it and looks at the log again after releasing the lock.
                self._r.delete(self._keys.audio_pending(sid))
                if self._r.exists(lock):
                    return
                continue  # it released the lock meanwhile: look ourselves
            self._r.delete(self._keys.audio_pending(sid))  # new audio from now on schedules a new task
            try:
                while True:
                    with timed(TRANSCRIPTION_SECONDS.labels("stream_pass").observe):
                        more = self._pass(sid)
                    if not more:
                        break
            finally:
                self._locks.release(lock, token)
            if self._caught_up(sid):
                return

    def _caught_up(self, sid: str) -> bool:
        last: Any = self._r.xrevrange(self._keys.audio_log(sid), count=1)
        if not last:
            return True
        raw = self._r.get(self._keys.audio_state(sid))
        cursor = json.loads(raw)["cursor"] if raw else "0-0"
        return bool(_text(last[0][0]) == cursor)

    def _pass(self, sid: str) -> bool:
        """One pass; True when there may be more to do right away."""
        k = self._keys
        session_raw = self._r.get(k.session(sid))
        if session_raw is None:
            return False  # the session ended
        session = Session.model_validate_json(session_raw)
        raw_state = self._r.get(k.audio_state(sid))
        state = StreamState.from_state(json.loads(raw_state) if raw_state else None)
        read_version = state.version
        raw_entries: Any = self._r.xrange(k.audio_log(sid), min=f"({state.cursor}", count=_MAX_ENTRIES)
        if not raw_entries:
            return False
        entries = [_entry(entry_id, fields) for entry_id, fields in raw_entries]
        stored: Any = self._r.get(k.audio_utterance(sid))
        audio = to_float(stored or b"")
        start_before, kept_before = state.utt.start, len(audio)

        models = self._load()
        transcription = session.audio.input.transcription
        config = TurnConfig(
            vad=session.audio.input.turn_detection,
            prompt=(transcription.prompt or "") if transcription else "",
            turn_threshold=self._settings.turn_threshold,
            text_threshold=self._settings.turn_text_threshold,
        )
        result = models.processor.run(state, audio, entries, config)

        previous = {ended.item_id: self._hand_over(sid, ended, models) for ended in result.ended}
        for event in result.events:
            if isinstance(event, AudioCommitted) and event.by_vad:
                event.previous_item_id = previous.get(event.item_id)  # where this worker put the turn

        result.state.version = read_version + 1
        pcm = to_pcm16(result.audio)
        if result.state.utt.start == start_before:  # only new samples at the end: append them
            mode, data = "append", pcm[2 * kept_before :]
        else:
            mode, data = "set", pcm
        written = self._commit(
            keys=[k.audio_state(sid), k.audio_utterance(sid), k.session_events(sid), k.audio_log(sid)],
            args=[
                read_version,
                json.dumps(result.state.to_state()),
                mode,
                data,
                _next_id(result.state.cursor),
                self._settings.session_ttl_s,
                *[e.model_dump_json() for e in result.events],
            ],
        )
        if not written:
            log.warning("session %s: state changed under this pass; dropped it", sid)
            return False
        return len(raw_entries) == _MAX_ENTRIES

    # --- audio.transcribe -----------------------------------------------------------------------

    def transcribe(self, request: TranscribeRequest) -> None:
        if request.job_id is not None:
            self._transcribe_job(request, request.job_id)
        elif request.session_id is not None and request.item_id is not None:
            try:
                self._transcribe_item(request, request.session_id, request.item_id)
            finally:
                # Transcribed or refused, the clip is not needed again; left, it would stay its whole TTL.
                self._r.delete(request.blob_key)
                self._r.hdel(self._keys.media_tasks(request.session_id), media_tasks.field(request.item_id, "audio"))

    def _transcribe_job(self, request: TranscribeRequest, job_id: str) -> None:
        """An HTTP transcription: segments to the job's stream, then one final event."""
        owner = f"{self._presence.name}/{secrets.token_hex(4)}"
        if self._jobs.claim(job_id, owner, self._settings.max_attempts) != "ok":
            return
        try:
            with timed(TRANSCRIPTION_SECONDS.labels("file").observe):
                final = self._run_job(request, job_id, owner)
        except BadAudio as exc:
            WORKER_ERRORS.labels("audio", "invalid_audio").inc()
            final = TranscriptionFinal(
                status="failed", error_code="invalid_audio", error_message=f"Invalid audio: {exc}."
            )
        except Exception:
            log.exception("transcription %s failed", job_id)
            final = TranscriptionFinal(
                status="failed",
                error_code="server_error",
                error_message="The audio worker had an error; it has been logged.",
            )
        if final is not None:
            self._jobs.finish(job_id, owner, final)
            # The job has ended: its clip (up to max_upload_bytes) would otherwise stay until its TTL.
            # Not when the job moved to another worker (final None), which still reads it.
            self._r.delete(request.blob_key)

    def _run_job(self, request: TranscribeRequest, job_id: str, owner: str) -> TranscriptionFinal | None:
        audio = self._load_clip(request)
        done = sum(isinstance(e, TranscriptSegment) for e in self._jobs.events_so_far(job_id))  # an earlier try
        asr = self._load().asr
        texts: list[str] = []
        for seg in asr.transcribe_clip(
            audio,
            language=request.language,
            prompt=request.prompt,
            word_timestamps=request.word_timestamps,
            temperature=request.temperature,
        ):
            texts.append(seg.text)
            if seg.id < done:
                continue
            words = [TranscriptWord(word=w, start=a, end=b) for w, a, b in seg.words] if seg.words else None
            event = TranscriptSegment(
                id=seg.id,
                start=seg.start,
                end=seg.end,
                text=seg.text,
                avg_logprob=seg.avg_logprob,
                compression_ratio=seg.compression_ratio,
                no_speech_prob=seg.no_speech_prob,
                words=words,
            )
            if not self._jobs.append(job_id, owner, [event]) or self._jobs.cancel_reason(job_id):
                return None  # the job moved to another worker, or the client went away
            self._jobs.renew(job_id, owner)
        return TranscriptionFinal(
            status="completed", text="".join(texts).strip(), language=asr.language, duration=len(audio) / SAMPLE_RATE
        )

    def _transcribe_item(self, request: TranscribeRequest, sid: str, item_id: str) -> None:
        """Speech a client put into a conversation item: its transcript, as for a committed turn."""
        item = self._writer.get_message(sid, item_id)
        if item is None or not any(isinstance(p, InputAudio) and p.transcript is None for p in item.content):
            return  # deleted, or transcribed already (a task sent again while the first one finished)
        try:
            audio = self._load_clip(request)
        except BadAudio as exc:
            self._writer.set_transcript(sid, item_id, "")
            self._emit(sid, TranscriptFailed(item_id=item_id, code="invalid_audio", message=f"Invalid audio: {exc}."))
            return
        models = self._load()
        text = "".join(
            s.text
            for s in models.asr.transcribe_clip(
                audio, language=request.language, prompt=request.prompt, word_timestamps=False, temperature=0.0
            )
        )
        ended = Ended(item_id, audio, text.strip(), by_vad=False, item_added=True)
        self._hand_over(sid, ended, models)
        self._emit(
            sid, TranscriptDone(item_id=item_id, transcript=ended.transcript, duration_s=len(audio) / SAMPLE_RATE)
        )

    def _emit(self, sid: str, event: SessionEvent) -> None:
        streams.publish(self._r, self._keys.session_events(sid), event, ttl_s=self._settings.session_ttl_s)

    def _load_clip(self, request: TranscribeRequest) -> np.ndarray:
        data: Any = self._r.get(request.blob_key)
        if data is None:
            raise BadAudio("the uploaded audio expired before a worker got to it")
        if request.encoding == "pcm16":
            if len(data) < 2 * SAMPLE_RATE // 10:
                raise BadAudio("less than 0.1 s of audio")
            return to_float(data)
        return decode_file(data, max_seconds=self._settings.max_audio_file_s)

    def _hand_over(self, sid: str, ended: Ended, models: _Models) -> str | None:
        """Idempotent side effects of an utterance that ended: item, transcript, audio, encoder states.

        Returns the id of the item before the one this worker added (None when the client added it).
        """
        k, ttl = self._keys, self._settings.session_ttl_s
        previous = None
        if not ended.item_added:
            item = MessageItem(id=ended.item_id, role="user", content=[InputAudio(type="input_audio")])
            previous = self._writer.add_item(sid, item)
        self._r.set(k.item_audio(sid, ended.item_id), to_pcm16(ended.audio), ex=ttl)
        # Encoder states before the transcript: a decoder that sees the transcript may project them.
        if self._settings.store_encoder_states and len(ended.audio) >= SAMPLE_RATE // 10:
            states = models.asr.encoder_states(ended.audio).astype(np.float16)
            header = EncoderStates(
                model=models.resolved.spec, dtype="float16", shape=list(states.shape), frames_per_second=50.0
            )
            key = k.item_encoder_states(sid, ended.item_id)
            self._r.hset(key, mapping={"header": header.model_dump_json(), "data": states.tobytes()})
            self._r.expire(key, ttl)
        self._writer.set_transcript(sid, ended.item_id, ended.transcript)
        self._r.hdel(k.media_tasks(sid), media_tasks.field(ended.item_id, "audio"))  # a committed turn's note
        return previous


def _entry(entry_id: Any, fields: Any) -> tuple[str, AudioLogEntry, bytes]:
    header = audio_log_adapter.validate_json(streams.message_of(fields))
    return _text(entry_id), header, fields.get(b"pcm") or b""


def _next_id(cursor: str) -> str:
    """The smallest stream id after `cursor`: entries below it have been applied."""
    if cursor == "0-0":
        return ""
    ms, seq = cursor.split("-")
    return f"{ms}-{int(seq) + 1}"
