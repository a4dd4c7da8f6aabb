"""Speech files as OpenAI's response_format names them, streamed and whole."""

import io
import wave

import av
import numpy as np
import pytest

from gateway.speech.containers import SpeechEncoder, rate_for, wav_header, whole_file


def _pcm(rate: int, seconds: float = 1.0) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    return (np.sin(2 * np.pi * 300 * t) * 8000).astype("<i2").tobytes()


def test_whole_wav_has_its_true_length():
    pcm = _pcm(24000)
    with wave.open(io.BytesIO(whole_file("wav", pcm))) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()) == (24000, 1, 2, 24000)


def test_streamed_wav_starts_with_an_open_ended_header():
    encoder = SpeechEncoder("wav")
    first = encoder.feed(_pcm(24000, 0.1))
    assert first.startswith(wav_header(24000)) and first[40:44] == b"\xff\xff\xff\xff"
    assert encoder.feed(b"\x00\x00") == b"\x00\x00" and encoder.close() == b""


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac"])
def test_encoded_formats_decode_to_the_same_length(fmt):
    rate = rate_for(fmt)
    encoder = SpeechEncoder(fmt)
    data = b"".join(encoder.feed(_pcm(rate, 0.5)) for _ in range(4)) + encoder.close()
    with av.open(io.BytesIO(data)) as container:
        seconds = sum(frame.samples for frame in container.decode(audio=0)) / container.streams.audio[0].rate
    assert 1.9 < seconds < 2.2  # codecs pad a frame or two
