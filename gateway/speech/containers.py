"""Speech as the files OpenAI's `response_format` names, written as it streams.

`pcm` is the audio itself (PCM16, 24 kHz, mono, little-endian, as OpenAI's); `wav` is it behind a
header whose sizes say "unknown length" (0xFFFFFFFF), as streamed WAV is written, since the length
is known only at the end; mp3, opus (in Ogg), aac (ADTS) and flac are encoded by PyAV (FFmpeg) into
a write-only sink, so nothing waits for the whole reply.
"""

from __future__ import annotations

import struct
from typing import Any, Final, Literal, cast

import numpy as np

SpeechFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]
MEDIA_TYPES: Final[dict[str, str]] = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
# (container, codec, rate) for the formats FFmpeg encodes; Opus runs at 48 kHz.
_FFMPEG: Final[dict[str, tuple[str, str, int]]] = {
    "mp3": ("mp3", "libmp3lame", 24_000),
    "opus": ("ogg", "libopus", 48_000),
    "aac": ("adts", "aac", 24_000),
    "flac": ("flac", "flac", 24_000),
}
PCM_RATE: Final = 24_000


def rate_for(fmt: SpeechFormat) -> int:
    """The PCM rate to ask the speech workers for, for a format."""
    return _FFMPEG[fmt][2] if fmt in _FFMPEG else PCM_RATE


def wav_header(rate: int, data_bytes: int = 0xFFFFFFFF) -> bytes:
    """A PCM16 mono WAV header; the default sizes mean "streamed, length unknown"."""
    riff = 0xFFFFFFFF if data_bytes == 0xFFFFFFFF else 36 + data_bytes
    return (
        b"RIFF"
        + struct.pack("<I", riff)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


class _Sink:
    """Where FFmpeg writes: write-only, so it never seeks back to patch a header."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


class SpeechEncoder:
    """PCM16 chunks in, the bytes of the format out, as soon as the format lets them go."""

    def __init__(self, fmt: SpeechFormat) -> None:
        self.fmt = fmt
        self.rate = rate_for(fmt)
        self._started = False
        self._container: Any = None
        if fmt in _FFMPEG:
            import av

            container, codec, rate = _FFMPEG[fmt]
            self._sink = _Sink()
            self._container = av.open(self._sink, mode="w", format=container)
            self._stream = cast("av.AudioStream", self._container.add_stream(codec, rate=rate, layout="mono"))

    def feed(self, pcm: bytes) -> bytes:
        if self._container is None:
            head = b"" if self._started or self.fmt != "wav" else wav_header(self.rate)
            self._started = True
            return head + pcm
        import av

        frame = av.AudioFrame.from_ndarray(np.frombuffer(pcm, "<i2").reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.rate
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        return self._sink.take()

    def close(self) -> bytes:
        """What is left once the audio has ended (a WAV of no audio still gets its header)."""
        if self._container is None:
            return self.feed(b"") if not self._started else b""
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        return self._sink.take()


def whole_file(fmt: SpeechFormat, pcm: bytes) -> bytes:
    """All of a reply's PCM16 (at `rate_for(fmt)`) as one file; a WAV gets its true length."""
    if fmt == "pcm":
        return pcm
    if fmt == "wav":
        return wav_header(PCM_RATE, len(pcm)) + pcm
    encoder = SpeechEncoder(fmt)
    return encoder.feed(pcm) + encoder.close()
