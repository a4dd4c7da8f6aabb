import pytest
from pydantic import ValidationError

from shared.config import Settings


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
