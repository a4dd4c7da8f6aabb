"""Real speech from text with espeak-ng (Debian package `espeak-ng`), for evaluation and tests."""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

from shared.pcm import StreamResampler


def have_espeak() -> bool:
    return shutil.which("espeak-ng") is not None


@functools.cache
def speak(text: str, rate: int = 24000, voice: str = "en-us", wpm: int = 150) -> bytes:
    """PCM16 mono at `rate` of `text` spoken by espeak-ng."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(path), text], check=True)
        with wave.open(str(path)) as w:
            src_rate = w.getframerate()
            samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return StreamResampler(src_rate, rate).process(samples).tobytes()
