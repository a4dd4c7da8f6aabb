"""One connection's input audio buffer: check and convert appends, forward them in order.

The conversion state (the resampler) belongs to the socket, which one gateway process owns; what
the workers need, the converted 16 kHz audio, goes to the session's audio log in Redis.
"""

from __future__ import annotations

import base64
import binascii

from shared.audio_bus import AudioBus
from shared.errors import InvalidRequest
from shared.messages import AudioFormat, new_id
from shared.pcm import TARGET_RATE, InputConverter

_MIN_COMMIT_MS = 100


class AudioInputBuffer:
    def __init__(self, bus: AudioBus, session_id: str, fmt: AudioFormat, *, max_seconds: float) -> None:
        self._bus = bus
        self._session_id = session_id
        self._max_samples = int(max_seconds * TARGET_RATE)
        self._format = fmt
        self._converter = _converter(fmt)
        self.buffered_samples = 0  # since the last commit or clear (with server VAD: of this speech)
        self.speaking = False  # server VAD heard speech start, and no commit since
        self.total_samples = 0  # since the session began (16 kHz): where the buffer ends
        self.item_id = new_id("item")  # what the buffer becomes when the client commits it

    def set_format(self, fmt: AudioFormat) -> None:
        if fmt == self._format:
            return
        if self.buffered_samples:
            raise InvalidRequest(
                "Change the input audio format only while the input audio buffer is empty.",
                param="session.audio.input.format",
            )
        self._format, self._converter = fmt, _converter(fmt)

    def seconds_in(self, audio_b64: str) -> float:
        """How long a chunk lasts, from its size alone (to charge it before it is forwarded)."""
        size = len(audio_b64) * 3 // 4
        rate = getattr(self._format, "rate", None)
        return size / (2 * rate) if rate else size / 8000  # PCM16 at its rate, or G.711 at 8 kHz

    async def append(self, audio_b64: str, *, vad: bool = False) -> None:
        """Check, convert and forward one chunk.

        With server VAD, silence before speech is not kept by the workers, so only speech counts
        against the buffer's limit: an open microphone may stay open in a quiet room."""
        try:
            data = base64.b64decode(audio_b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidRequest("'audio' is not valid base64.", code="invalid_audio", param="audio") from exc
        try:
            samples = self._converter.convert(data)
        except ValueError as exc:
            raise InvalidRequest(
                f"Audio is not valid {self._format.type}: {exc}.", code="invalid_audio", param="audio"
            ) from exc
        if vad and not self.speaking:
            self.buffered_samples = 0
        if self.buffered_samples + len(samples) > self._max_samples:
            raise InvalidRequest(
                f"The input audio buffer holds at most {self._max_samples / TARGET_RATE:.0f} s; commit or clear it.",
                code="audio_too_long",
                param="audio",
            )
        if len(samples):
            await self._bus.append(self._session_id, samples.tobytes(), self.item_id)
            self.buffered_samples += len(samples)
            self.total_samples += len(samples)

    def can_commit(self) -> bool:
        return self.buffered_samples * 1000 / TARGET_RATE >= _MIN_COMMIT_MS

    def check_commit(self) -> None:
        buffered_ms = self.buffered_samples * 1000 / TARGET_RATE
        if buffered_ms < _MIN_COMMIT_MS:
            raise InvalidRequest(
                f"Error committing input audio buffer: buffer too small. Expected at least {_MIN_COMMIT_MS}ms of "
                f"audio, but buffer only has {buffered_ms:.2f}ms of audio.",
                code="input_audio_buffer_commit_empty",
            )

    async def commit(self) -> str:
        """Hand the buffer over as an item (the caller has added it); return the item id."""
        item_id = self.item_id
        await self._bus.commit(self._session_id, item_id, item_added=True)
        self._reset()
        return item_id

    async def clear(self) -> None:
        await self._bus.clear(self._session_id)
        self._reset()

    def committed_by_vad(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.buffered_samples = 0
        self.speaking = False
        self.item_id = new_id("item")


def _converter(fmt: AudioFormat) -> InputConverter:
    return InputConverter(fmt.type, getattr(fmt, "rate", 8000))
