"""Audio files from clients -> 16 kHz mono float32, with PyAV (FFmpeg): WAV, MP3, FLAC, OGG/Opus, WebM/Opus.

Every way a file can be bad ends in `BadAudio` with a message that names the problem: not a media
file, no audio stream, undecodable data, a stream that decodes only in part, too long, too short.
"""

from __future__ import annotations

import io
from typing import Any

import av
import numpy as np
import numpy.typing as npt

from shared.pcm import to_float

SAMPLE_RATE = 16_000
_MIN_SAMPLES = SAMPLE_RATE // 10
# A file that declares its length must decode to about that much; less means it is cut or damaged.
_PARTIAL_TOLERANCE = 0.9


class BadAudio(ValueError):
    pass


def decode_file(data: bytes, *, max_seconds: float) -> npt.NDArray[np.float32]:
    if not data:
        raise BadAudio("the file is empty")
    chunks: list[npt.NDArray[Any]] = []
    decoded = 0
    try:
        with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise BadAudio("the file has no audio stream")
            stream = container.streams.audio[0]
            declared = _wav_declared_seconds(data)
            if declared is None and container.duration and container.format.name != "wav":
                declared = float(container.duration / av.time_base)
            resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    samples = out.to_ndarray().reshape(-1)
                    decoded += len(samples)
                    chunks.append(samples)
                if decoded > max_seconds * SAMPLE_RATE:
                    raise BadAudio(f"the audio is longer than the limit of {max_seconds:.0f} s")
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except av.error.FFmpegError as exc:
        kind = type(exc).__name__
        raise BadAudio(f"the file is not audio that FFmpeg can decode ({kind})") from exc
    audio = to_float(np.concatenate(chunks)) if chunks else np.zeros(0, np.float32)
    seconds = len(audio) / SAMPLE_RATE
    if len(audio) < _MIN_SAMPLES:
        raise BadAudio(f"the file holds {seconds:.2f} s of audio; at least 0.1 s is needed")
    if declared is not None and seconds < _PARTIAL_TOLERANCE * declared - 0.5:
        raise BadAudio(f"only {seconds:.1f} s of the file's {declared:.1f} s could be decoded; it is cut or damaged")
    return audio


def _wav_declared_seconds(data: bytes) -> float | None:
    """The length a WAV header declares (FFmpeg infers it from the file size, so it cannot see a cut)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos, byte_rate = 12, 0
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        if chunk == b"fmt " and pos + 16 <= len(data):
            byte_rate = int.from_bytes(data[pos + 16 : pos + 20], "little")
        elif chunk == b"data":
            unknown = size >= 0xFFFFFF00  # streaming writers leave the size open
            return None if unknown or not byte_rate else size / byte_rate
        pos += 8 + size + (size & 1)
    return None
