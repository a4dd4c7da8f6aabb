"""What a speech worker process does with a `speech.synthesize` task: speak one piece of text.

Each piece (a sentence or clause of a reply, cut by the gateway as the reply streams) is a job of
its own, claimed under a lease like a response, so several speech workers speak one reply's pieces
at once and a worker killed mid-piece has the piece redone by the next. The audio is resampled
once, from the voice's rate to the client's, and encoded as asked. The cancel flag is read before
the piece starts and after each sentence: a barge-in leaves nothing speaking.
"""

from __future__ import annotations

import base64
import logging
import secrets
from dataclasses import dataclass
from typing import Any

import redis

from shared.config import Settings
from shared.messages import AudioChunk, ResponseFinal, SynthesizeRequest
from shared.metrics import SPEECH_SECONDS, WORKER_ERRORS
from shared.models import ResolvedModel, resolve_model, voice_files
from shared.pcm import OutputEncoder
from shared.response_state import ResponseStore
from workers.base import ModelService
from workers.presence import Presence
from workers.speech.voice import Voice

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Loaded:
    resolved: ResolvedModel
    voice: Voice


class SpeechService(ModelService[_Loaded]):
    what = "voice"

    def __init__(self, settings: Settings, client: redis.Redis, presence: Presence) -> None:
        super().__init__(settings, client, presence)
        self._jobs = ResponseStore(
            client, self._keys, lease_ms=int(settings.lease_ttl_s * 1000), ttl_s=settings.session_ttl_s
        )

    def _identity(self, models: _Loaded) -> dict[str, Any]:
        return {
            "model": models.resolved.spec,
            "sha256": models.resolved.sha256,
            "voice": models.voice.name,
            "sample_rate": models.voice.rate,
        }

    def _build(self) -> _Loaded:
        s = self._settings
        resolved = resolve_model(
            s.tts_voice, s.models_dir, allow_downloads=s.allow_downloads, expected_sha256=s.tts_voice_sha256
        )
        model, config = voice_files(resolved)
        voice = Voice(model, config, threads=s.speech_threads)
        log.info("voice %s (%d Hz), sha256 %s", voice.name, voice.rate, resolved.sha256[:12])
        return _Loaded(resolved, voice)

    def synthesize(self, request: SynthesizeRequest) -> None:
        job_id = request.job_id
        owner = f"{self._presence.name}/{secrets.token_hex(4)}"
        if self._jobs.claim(job_id, owner, self._settings.max_attempts) != "ok":
            return  # ended already (cancelled, or done by another copy of the task)
        try:
            final = self._speak(request, owner)
        except Exception:
            log.exception("speech %s failed", job_id)
            WORKER_ERRORS.labels("speech", "server_error").inc()
            final = ResponseFinal(
                status="failed",
                error_code="server_error",
                error_message="The speech worker had an error; it has been logged.",
            )
        if final is not None:
            self._jobs.finish(job_id, owner, final)

    def _speak(self, request: SynthesizeRequest, owner: str) -> ResponseFinal | None:
        """Stream the piece's audio; None when the job went to another worker."""
        job_id = request.job_id
        if reason := self._jobs.cancel_reason(job_id):
            return ResponseFinal(status="cancelled", reason=reason)
        voice = self._load().voice
        # An earlier attempt (a worker that died) streamed some of the piece: skip as many samples.
        skip = sum(e.samples for e in self._jobs.events_so_far(job_id) if isinstance(e, AudioChunk))
        encoder = OutputEncoder(voice.rate, request.encoding, request.rate)
        bytes_per_sample = 1 if request.encoding in ("pcmu", "pcma") else 2
        with SPEECH_SECONDS.time():
            for pcm in voice.speak(request.text, request.speed):
                data, samples = encoder.encode(pcm)
                if skip:
                    dropped = min(skip, samples)
                    data, samples, skip = data[dropped * bytes_per_sample :], samples - dropped, skip - dropped
                if samples and not self._jobs.append(job_id, owner, _chunks(data, bytes_per_sample, encoder.rate)):
                    return None
                if reason := self._jobs.cancel_reason(job_id):
                    return ResponseFinal(status="cancelled", reason=reason)
                self._jobs.renew(job_id, owner)
        return ResponseFinal(status="completed")


def _chunks(data: bytes, bytes_per_sample: int, rate: int) -> list[AudioChunk]:
    """A sentence's audio as deltas of at most 200 ms: small websocket frames, smooth playback."""
    step = bytes_per_sample * rate // 5
    return [
        AudioChunk(
            audio=base64.b64encode(data[i : i + step]).decode(), samples=len(data[i : i + step]) // bytes_per_sample
        )
        for i in range(0, len(data), step)
    ]
