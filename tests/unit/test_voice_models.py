"""A voice setting becomes a verified Piper voice: bundled, or a path to any voice's .onnx and .onnx.json."""

import shutil

import pytest

from shared.config import Settings
from shared.errors import ModelError
from shared.models import resolve_model, voice_files


def test_bundled_and_path_voices(tmp_path):
    bundled = resolve_model("bundled:en_US-joe-medium", tmp_path / "models")
    onnx, config = voice_files(bundled)
    assert (onnx.name, config.name) == ("en_US-joe-medium.onnx", "en_US-joe-medium.onnx.json")

    mine = tmp_path / "voices" / "my-voice.onnx"
    mine.parent.mkdir()
    shutil.copy(onnx, mine)
    with pytest.raises(ModelError, match=r"my-voice\.onnx\.json"):  # Piper voices come as both files
        voice_files(resolve_model(str(mine), tmp_path))
    shutil.copy(config, mine.with_name("my-voice.onnx.json"))
    by_path = resolve_model(str(mine), tmp_path, expected_sha256=resolve_model(str(onnx), tmp_path).sha256)
    assert voice_files(by_path) == (mine, mine.with_name("my-voice.onnx.json"))
    with pytest.raises(ModelError, match="sha256"):
        resolve_model(str(mine), tmp_path, expected_sha256="0" * 64)


def test_voice_names_clients_may_ask_for():
    settings = Settings(tts_voice="/voices/en_GB-alan-low.onnx")
    assert settings.voice_name == "en_GB-alan-low"
    assert settings.accepts_voice("alloy") and settings.accepts_voice("en_GB-alan-low")
    assert not settings.accepts_voice("en_US-joe-medium")
    assert Settings().accepts_speech_model("tts-1") and not Settings().accepts_speech_model("whisper-1")
