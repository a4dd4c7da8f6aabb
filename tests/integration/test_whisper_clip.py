"""Whole-clip transcription is reproducible: the same clip and parameters give the same text (real model).

Before, the same file gave three texts in three calls: faster-whisper's temperature fallback samples, and
CTranslate2 seeds each thread's generator once, so a long-lived model never samples the same way twice.
"""

from __future__ import annotations

import numpy as np

from shared.config import Settings
from shared.models import resolve_model
from shared.pcm import to_float
from tests.speech import speak
from workers.audio.whisper import SAMPLE_RATE, WhisperASR


def test_the_same_clip_gives_the_same_text_even_when_sampled():
    s = Settings()
    asr = WhisperASR(resolve_model(s.asr_model, s.models_dir).path, threads=2, compute_type=s.asr_compute_type)
    speech = to_float(speak("The quick brown fox jumps over the lazy dog.", rate=SAMPLE_RATE))
    noisy = (speech + 0.05 * np.random.default_rng(3).standard_normal(len(speech))).astype(np.float32)

    def text(temperature: float) -> str:
        segments = asr.transcribe_clip(
            noisy, language=None, prompt=None, word_timestamps=False, temperature=temperature
        )
        return "".join(seg.text for seg in segments)

    sampled = {text(1.0) for _ in range(3)}  # every window sampled at temperature 1
    assert len(sampled) == 1, sampled
    assert len({text(0.0) for _ in range(2)}) == 1
