"""POST /v1/audio/transcriptions through the official openai SDK, on real files and real workers."""

from collections.abc import Iterator

import openai
import pytest
from openai import OpenAI

from tests.helpers import Stack
from tests.speech import encode, silence, speak, wav_bytes

SENTENCE = "Please send the quarterly report by Friday."


@pytest.fixture(scope="module")
def speech() -> bytes:
    return silence(0.3) + speak(SENTENCE) + silence(0.3)


@pytest.fixture
def client(stack: Stack) -> Iterator[OpenAI]:
    with OpenAI(base_url=f"{stack.http}/v1", api_key="unused", max_retries=0) as c:
        yield c


@pytest.mark.parametrize(
    ("name", "container", "codec"),
    [
        ("speech.mp3", "mp3", "libmp3lame"),
        ("speech.flac", "flac", "flac"),
        ("speech.ogg", "ogg", "libopus"),
        ("speech.webm", "webm", "libopus"),
    ],
)
def test_compressed_formats(client: OpenAI, speech: bytes, name: str, container: str, codec: str):
    result = client.audio.transcriptions.create(model="whisper-1", file=(name, encode(speech, container, codec)))
    assert "quarterly report" in result.text.lower()


def test_wav_in_every_response_format(client: OpenAI, speech: bytes):
    wav = ("speech.wav", wav_bytes(speech))
    assert "quarterly" in client.audio.transcriptions.create(model="whisper-tiny.en", file=wav).text.lower()
    text = client.audio.transcriptions.create(model="whisper-1", file=wav, response_format="text")
    assert isinstance(text, str) and "quarterly" in text.lower()
    srt = client.audio.transcriptions.create(model="whisper-1", file=wav, response_format="srt")
    assert srt.startswith("1\n00:00:0") and " --> " in srt
    vtt = client.audio.transcriptions.create(model="whisper-1", file=wav, response_format="vtt")
    assert vtt.startswith("WEBVTT")
    verbose = client.audio.transcriptions.create(
        model="whisper-1", file=wav, response_format="verbose_json", timestamp_granularities=["word", "segment"]
    )
    assert verbose.duration == pytest.approx(len(speech) / 48000, abs=0.1)
    assert verbose.segments and verbose.segments[0].start >= 0
    assert verbose.words and any("quarterly" in w.word.lower() for w in verbose.words)


def test_streaming(client: OpenAI, speech: bytes):
    stream = client.audio.transcriptions.create(model="whisper-1", file=("s.wav", wav_bytes(speech)), stream=True)
    events = list(stream)
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    done = [e for e in events if e.type == "transcript.text.done"]
    assert deltas and len(done) == 1
    assert done[0].text == "".join(deltas).strip()


def test_bad_requests(client: OpenAI, speech: bytes):
    bad_files = {
        "garbage.mp3": b"this is not audio at all" * 50,
        "empty.wav": b"",
        "cut.wav": wav_bytes(speech)[: len(speech) // 3],
        "cut.ogg": encode(speech, "ogg", "libopus")[:200],
    }
    for name, data in bad_files.items():
        with pytest.raises(openai.BadRequestError) as info:
            client.audio.transcriptions.create(model="whisper-1", file=(name, data))
        assert info.value.body["code"] == "invalid_audio", name  # type: ignore[index]
        assert "Invalid audio" in info.value.body["message"]  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        client.audio.transcriptions.create(model="no-such-model", file=("s.wav", wav_bytes(speech)))
    too_big = b"\0" * (26 << 20)
    with pytest.raises(openai.APIStatusError) as info:
        client.audio.transcriptions.create(model="whisper-1", file=("big.wav", too_big))
    assert info.value.status_code == 413
    # Still serving.
    assert (
        "quarterly"
        in client.audio.transcriptions.create(model="whisper-1", file=("s.wav", wav_bytes(speech))).text.lower()
    )
