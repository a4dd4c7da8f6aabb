"""Client audio -> 16 kHz mono PCM16, the one format audio has inside the service, and speech out.

The gateway converts each `input_audio_buffer.append` as it arrives: G.711 (µ-law, A-law) is
expanded to PCM16, and other rates go through a streaming polyphase resampler whose filter state
carries over from chunk to chunk, so chunk boundaries leave no clicks. Speech workers go the other
way (`OutputEncoder`): the voice's rate to the client's, then G.711 where asked. Pure numpy.
"""

from __future__ import annotations

from math import gcd

import numpy as np
import numpy.typing as npt

TARGET_RATE = 16_000
Int16 = npt.NDArray[np.int16]
Float32 = npt.NDArray[np.float32]


def to_float(pcm: bytes | Int16) -> Float32:
    """PCM16 (little-endian bytes or int16 samples) as floats in [-1, 1): what the models take."""
    samples = np.frombuffer(pcm, dtype="<i2") if isinstance(pcm, bytes | bytearray | memoryview) else pcm
    return samples.astype(np.float32) / 32768.0


def to_pcm16(audio: Float32) -> bytes:
    """Floats in [-1, 1] as little-endian PCM16 bytes (clipped): how audio is stored in Redis."""
    return np.clip(np.rint(audio * 32768.0), -32768, 32767).astype("<i2").tobytes()


def _ulaw_table() -> Int16:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (u >> 4) & 0x07
    sample = (((u & 0x0F) << 3) + 0x84) << exponent
    sample -= 0x84
    return np.where(u & 0x80, -sample, sample).astype(np.int16)


def _alaw_table() -> Int16:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (a >> 4) & 0x07
    mantissa = a & 0x0F
    sample = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    return np.where(a & 0x80, sample, -sample).astype(np.int16)


ULAW = _ulaw_table()
ALAW = _alaw_table()


def expand_g711(data: bytes, table: Int16) -> Int16:
    return table[np.frombuffer(data, dtype=np.uint8)]


def _compressor(table: Int16) -> npt.NDArray[np.uint8]:
    """For every PCM16 value, the G.711 code whose expansion is nearest: the inverse of `table`."""
    order = np.argsort(table, kind="stable")
    values = table[order].astype(np.int32)
    x = np.arange(-32768, 32768, dtype=np.int32)
    hi = np.clip(np.searchsorted(values, x), 1, len(values) - 1)
    lo = hi - 1
    nearest = np.where(np.abs(values[hi] - x) < np.abs(x - values[lo]), hi, lo)
    return order[nearest].astype(np.uint8)


_COMPRESSORS: dict[str, npt.NDArray[np.uint8]] = {}


def compress_g711(samples: Int16, law: str) -> bytes:
    """PCM16 samples as G.711 bytes; `law` is "pcmu" (µ-law) or "pcma" (A-law)."""
    table = _COMPRESSORS.get(law)
    if table is None:
        table = _COMPRESSORS[law] = _compressor(ULAW if law == "pcmu" else ALAW)
    return table[samples.astype(np.int32) + 32768].tobytes()


class StreamResampler:
    """Rational-ratio polyphase resampler (Kaiser-windowed sinc) that keeps state between chunks."""

    def __init__(self, src_rate: int, dst_rate: int = TARGET_RATE, taps_per_phase: int = 24) -> None:
        g = gcd(src_rate, dst_rate)
        self.up, self.down = dst_rate // g, src_rate // g
        self._k = taps_per_phase
        n = self.up * taps_per_phase
        cutoff = 0.45 * min(src_rate, dst_rate) / (src_rate * self.up)  # of the upsampled rate
        t = np.arange(n) - (n - 1) / 2
        h = 2 * cutoff * np.sinc(2 * cutoff * t) * np.kaiser(n, 8.0) * self.up
        # phases[p, k] weights input sample i-k for an output at upsampled index i*up + p
        self._phases = h.reshape(taps_per_phase, self.up).T.astype(np.float32)
        self._history = np.zeros(taps_per_phase - 1, dtype=np.float32)
        self._inputs = 0  # input samples seen
        self._outputs = 0  # output samples produced

    @property
    def passthrough(self) -> bool:
        return self.up == self.down

    def process(self, samples: Int16) -> Int16:
        if self.passthrough:
            return samples
        buf = np.concatenate([self._history, samples.astype(np.float32)])
        total = self._inputs + len(samples)
        last = (total * self.up - 1) // self.down  # the last output whose newest input has arrived
        j = np.arange(self._outputs, last + 1)
        u = j * self.down
        newest = u // self.up - self._inputs + (self._k - 1)  # index of input sample u // up in buf
        windows = buf[newest[:, None] - np.arange(self._k)[None, :]]
        out = np.einsum("nk,nk->n", windows, self._phases[u % self.up])
        self._history = buf[len(buf) - (self._k - 1) :]
        self._inputs, self._outputs = total, last + 1
        return np.clip(np.rint(out), -32768, 32767).astype(np.int16)


class InputConverter:
    """One session's input format: bytes from the client in, 16 kHz PCM16 out."""

    def __init__(self, kind: str, rate: int) -> None:
        self.kind = kind
        self.rate = 8000 if kind in ("audio/pcmu", "audio/pcma") else rate
        self._table = ULAW if kind == "audio/pcmu" else ALAW if kind == "audio/pcma" else None
        self._resampler = StreamResampler(self.rate)

    def convert(self, data: bytes) -> Int16:
        """Raises ValueError when the byte count cannot hold whole samples."""
        if self._table is not None:
            samples = expand_g711(data, self._table)
        else:
            if len(data) % 2:
                raise ValueError("PCM16 audio must have an even number of bytes")
            samples = np.frombuffer(data, dtype="<i2")
        return self._resampler.process(samples)


class OutputEncoder:
    """Speech for a client: PCM16 at the voice's rate in, bytes in the asked encoding and rate out."""

    def __init__(self, src_rate: int, encoding: str, rate: int) -> None:
        self.encoding = encoding
        self.rate = 8000 if encoding in ("pcmu", "pcma") else rate
        self._resampler = StreamResampler(src_rate, self.rate)

    def encode(self, samples: Int16) -> tuple[bytes, int]:
        """The encoded bytes and how many samples (at the output rate) they hold."""
        out = self._resampler.process(samples)
        if self.encoding in ("pcmu", "pcma"):
            return compress_g711(out, self.encoding), len(out)
        return out.astype("<i2").tobytes(), len(out)
