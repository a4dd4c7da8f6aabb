"""The streaming policy around the models: turns, padding, ordering of events, state round trips.

A loudness detector and a transcriber that names one word per 0.25 s of loud audio stand in for
Silero and Whisper: this tests the bookkeeping, not the models (the e2e tests run the real ones).
"""

import numpy as np

from shared.config import Settings
from shared.messages import AudioAppend, AudioClear, AudioCommit, SemanticVad, ServerVad
from workers.audio.stream import StreamProcessor, StreamState, TurnConfig
from workers.audio.vad import WINDOW, VadState
from workers.audio.whisper import SAMPLE_RATE, Segment, WindowResult


class LoudnessVad:
    def probabilities(self, state: VadState, audio: np.ndarray) -> np.ndarray:
        samples = np.concatenate([state.leftover, audio])
        n = len(samples) // WINDOW
        state.leftover = samples[n * WINDOW :]
        windows = samples[: n * WINDOW].reshape(n, WINDOW) if n else np.zeros((0, WINDOW))
        return (np.abs(windows).mean(axis=1) > 0.1).astype(np.float32)


class CountingAsr:
    def transcribe(self, audio: np.ndarray, prompt: str = "") -> WindowResult:
        loud = int((np.abs(audio) > 0.1).sum() / (0.25 * SAMPLE_RATE))
        text = "".join(f" w{i}" for i in range(loud))
        return WindowResult([Segment(0.0, len(audio) / SAMPLE_RATE, text)] if text else [], 0.0)


def _pcm(seconds: float, loud: bool) -> bytes:
    return (np.full(int(seconds * SAMPLE_RATE), 0.5 if loud else 0.0) * 32767).astype("<i2").tobytes()


class ScriptedTurns:
    """End-of-turn answers: done once the utterance holds `loud_s` seconds of speech; records each ask."""

    def __init__(self, loud_s: float) -> None:
        self.loud_s = loud_s
        self.asked: list[float] = []  # seconds of audio asked about

    def complete(self, audio: np.ndarray) -> float:
        self.asked.append(len(audio) / SAMPLE_RATE)
        return 1.0 if (np.abs(audio) > 0.1).sum() >= self.loud_s * SAMPLE_RATE else 0.0


class ScriptedSentences:
    """Sentence-end scores: whole (0.0) once the words so far number `words`, else -9; records the words."""

    def __init__(self, words: int) -> None:
        self.words = words
        self.asked: list[str] = []

    def score(self, text: str) -> float:
        self.asked.append(text)
        return 0.0 if len(text.split()) >= self.words else -9.0


def _run(
    chunks: list[bytes | str],
    vad: ServerVad | SemanticVad | None,
    turns: ScriptedTurns | None = None,
    sentences: ScriptedSentences | None = None,
):
    processor = StreamProcessor(CountingAsr(), LoudnessVad(), turns, sentences)
    settings = Settings()
    config = TurnConfig(vad=vad, turn_threshold=settings.turn_threshold, text_threshold=settings.turn_text_threshold)
    state, audio, events, ended = StreamState(), np.zeros(0, np.float32), [], []
    for n, chunk in enumerate(chunks):
        if chunk == "commit":
            entry = AudioCommit(item_id=f"item_{n}", item_added=True)
        elif chunk == "clear":
            entry = AudioClear()
        else:
            assert isinstance(chunk, bytes)
            entry = AudioAppend(samples=len(chunk) // 2, item_id="item_manual")
        pcm = chunk if isinstance(chunk, bytes) else b""
        result = processor.run(state, audio, [(f"{n + 1}-0", entry, pcm)], config)
        state = StreamState.from_state(result.state.to_state())  # as if the next pass ran elsewhere
        audio, events, ended = result.audio, events + result.events, ended + result.ended
    return state, events, ended


def _split(pcm: bytes, ms: int = 100) -> list[bytes | str]:
    step = 2 * SAMPLE_RATE * ms // 1000
    return [pcm[i : i + step] for i in range(0, len(pcm), step)]


def test_server_vad_ends_the_turn_after_silence_and_keeps_padding():
    vad = ServerVad(silence_duration_ms=500, prefix_padding_ms=300)
    state, events, ended = _run(_split(_pcm(1.0, False) + _pcm(2.0, True) + _pcm(1.0, False)), vad)
    kinds = [e.type for e in events]
    assert kinds[0] == "speech_started" and "speech_stopped" in kinds
    assert kinds.index("speech_stopped") < kinds.index("committed") < kinds.index("transcript_done")
    assert len(ended) == 1 and ended[0].by_vad and not ended[0].item_added
    # 300 ms before the speech, 2 s of speech, 150 ms after it (windows round to 32 ms).
    assert abs(len(ended[0].audio) / SAMPLE_RATE - 2.45) < 0.07
    deltas = "".join(e.delta for e in events if e.type == "transcript_delta")
    assert deltas.split() == ended[0].transcript.split() == [f"w{i}" for i in range(8)]
    assert not state.in_speech and state.utt.item_id is None


def test_silence_alone_never_becomes_a_turn_and_is_not_kept():
    state, events, ended = _run(_split(_pcm(5.0, False)), ServerVad(prefix_padding_ms=300))
    assert events == [] and ended == []
    assert state.total == 5 * SAMPLE_RATE
    assert state.utt.start >= state.total - SAMPLE_RATE  # only about the padding is kept


def test_client_commit_without_vad_uses_the_gateways_item_id():
    state, events, ended = _run([*_split(_pcm(0.5, False) + _pcm(1.0, True)), "commit"], None)
    assert [e.type for e in events if e.type.startswith("speech")] == []
    assert ended[0].item_id == events[-1].item_id
    assert ended[0].item_added and not ended[0].by_vad
    assert ended[0].transcript.split() == [f"w{i}" for i in range(4)]
    live = [e for e in events if e.type == "transcript_delta"]
    assert live and all(e.item_id == "item_manual" for e in live[:-1])


def test_clear_drops_the_utterance():
    state, events, ended = _run([*_split(_pcm(1.0, True)), "clear", "commit"], None)
    assert ended[-1].transcript == "" and len(ended[-1].audio) == 0


def test_semantic_vad_waits_through_a_pause_until_the_model_says_the_speaker_is_done():
    # "I'd like to know ... (800 ms) ... the capital of France": server VAD cuts it at the pause.
    speech = _pcm(0.5, False) + _pcm(1.0, True) + _pcm(0.8, False) + _pcm(1.0, True) + _pcm(1.5, False)
    _, _, cut = _run(_split(speech), ServerVad(silence_duration_ms=500))
    assert len(cut) == 2
    turns = ScriptedTurns(loud_s=2.0)  # done only once both halves are heard
    _, events, ended = _run(_split(speech), SemanticVad(type="semantic_vad", eagerness="low"), turns)
    assert len(ended) == 1 and ended[0].transcript.split() == [f"w{i}" for i in range(8)]
    # Asked 200 ms into the pause (not done), then 200 ms into the final silence (done).
    assert len(turns.asked) == 2 and turns.asked[1] - turns.asked[0] > 1.0
    stopped = next(e for e in events if e.type == "speech_stopped")
    assert abs(stopped.audio_end_ms - 3300) <= 32  # the end of the speech (to a VAD window), whenever it ended


def test_semantic_vad_ends_at_the_eagerness_wait_when_the_model_never_says_done():
    speech = _pcm(0.3, False) + _pcm(1.0, True) + _pcm(2.5, False)
    turns = ScriptedTurns(loud_s=99)
    _, _, high = _run(_split(speech), SemanticVad(type="semantic_vad", eagerness="high"), turns)
    assert len(high) == 1  # 2 s of silence ended it
    _, _, medium = _run(_split(speech), SemanticVad(type="semantic_vad", eagerness="medium"), ScriptedTurns(99))
    assert medium == []  # 4 s: still waiting


def test_semantic_vad_waits_where_the_sound_says_done_but_the_words_are_not_a_whole_sentence():
    speech = _pcm(0.5, False) + _pcm(1.0, True) + _pcm(0.8, False) + _pcm(1.0, True) + _pcm(1.5, False)
    turns = ScriptedTurns(loud_s=0.5)  # the sound says "done" at every pause
    _, _, cut = _run(_split(speech), SemanticVad(type="semantic_vad", eagerness="low"), turns)
    assert len(cut) == 2
    sentences = ScriptedSentences(words=8)  # the words read as whole once both halves are said
    _, _, ended = _run(_split(speech), SemanticVad(type="semantic_vad", eagerness="low"), ScriptedTurns(0.5), sentences)
    assert len(ended) == 1 and ended[0].transcript.split() == [f"w{i}" for i in range(8)]
    # Asked at the pause with the first half's words (the live transcript so far), then at the end.
    assert [len(words.split()) for words in sentences.asked] == [4, 8]


def test_semantic_vad_leaves_a_single_word_to_the_sound():
    speech = _pcm(0.3, False) + _pcm(0.4, True) + _pcm(1.0, False)  # one word ("Hello.")
    sentences = ScriptedSentences(words=99)
    _, _, ended = _run(_split(speech), SemanticVad(type="semantic_vad", eagerness="low"), ScriptedTurns(0.1), sentences)
    assert len(ended) == 1 and sentences.asked == []
