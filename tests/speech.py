"""Real speech for tests: espeak-ng renders text, resampled to the rate a client would send."""

from __future__ import annotations

import base64
import wave

import numpy as np

from training.speech import speak

__all__ = ["chunks_b64", "encode", "silence", "speak", "wav_bytes"]


def silence(seconds: float, rate: int = 24000) -> bytes:
    return bytes(2 * int(seconds * rate))


def chunks_b64(pcm: bytes, rate: int = 24000, ms: int = 100) -> list[str]:
    step = 2 * rate * ms // 1000
    return [base64.b64encode(pcm[i : i + step]).decode() for i in range(0, len(pcm), step)]


def wav_bytes(pcm: bytes, rate: int = 24000) -> bytes:
    import io

    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return out.getvalue()


def encode(pcm: bytes, container: str, codec: str, rate: int = 24000) -> bytes:
    """Encode PCM16 mono into a compressed file with PyAV (FFmpeg): mp3, flac, ogg/opus, webm/opus."""
    import io

    import av

    out = io.BytesIO()
    out_rate = 48000 if codec == "libopus" else rate
    with av.open(out, mode="w", format=container) as dst:
        stream = dst.add_stream(codec, rate=out_rate, layout="mono")
        resampler = av.AudioResampler(format=stream.format, layout="mono", rate=out_rate)
        frame = av.AudioFrame.from_ndarray(np.frombuffer(pcm, "<i2").reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        for f in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(f):
                dst.mux(packet)
        for packet in stream.encode(None):
            dst.mux(packet)
    return out.getvalue()
