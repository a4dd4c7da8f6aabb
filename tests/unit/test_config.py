import pytest
from pydantic import ValidationError

from shared.config import DEFAULT_DECODER_MODEL, SMALL_DECODER_MODEL, Settings, model_id


def test_reads_prefixed_environment(monkeypatch):
    monkeypatch.setenv("MMSTREAM_PORT", "9123")
    monkeypatch.setenv("MMSTREAM_DECODER_THREADS", "3")
    monkeypatch.setenv("PORT", "1")
    s = Settings()
    assert (s.port, s.decoder_threads) == (9123, 3)


def test_settings_are_frozen_and_validated():
    s = Settings()
    with pytest.raises(ValidationError):
        s.port = 1  # type: ignore[misc]
    with pytest.raises(ValidationError):
        Settings(decoder_threads=0)


def test_broker_defaults_to_redis_and_visibility_exceeds_time_limit():
    s = Settings(redis_url="redis://h:1/2", decode_time_limit_s=100)
    assert s.celery_broker_url == "redis://h:1/2"
    assert s.visibility_timeout_s > 100


def test_model_aliases():
    s = Settings(served_model_name="a", model_aliases=["b"])
    assert s.accepts_model("a") and s.accepts_model("b") and not s.accepts_model("c")


def test_the_served_model_id_follows_the_decoder_model(monkeypatch):
    monkeypatch.delenv("MMSTREAM_DECODER_MODEL", raising=False)  # the test suite runs the small model
    assert Settings().decoder_model == DEFAULT_DECODER_MODEL
    assert Settings().served_model_name == "qwen2.5-coder-1.5b-instruct"
    assert Settings(decoder_model=SMALL_DECODER_MODEL).served_model_name == "qwen2.5-coder-0.5b-instruct"
    monkeypatch.setenv("MMSTREAM_DECODER_MODEL", "/models/Llama-3.2-3B-Instruct-Q4_K_M.gguf")
    assert Settings().served_model_name == "llama-3.2-3b-instruct"
    monkeypatch.setenv("MMSTREAM_SERVED_MODEL_NAME", "mine")
    assert Settings().served_model_name == "mine"
    assert model_id("hf:org/repo/gemma-3-270m-it.F16.gguf") == "gemma-3-270m-it"
