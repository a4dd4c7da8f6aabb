"""The audio worker's Celery tasks: thin shells around `AudioService`."""

from __future__ import annotations

from typing import Any

from celery import Celery

from shared.celery_app import TASK_AUDIO_STREAM, TASK_AUDIO_TRANSCRIBE
from shared.messages import AudioStreamRequest, TranscribeRequest
from workers.audio.service import AudioService

SERVICE = AudioService


def register(app: Celery, service: AudioService) -> None:
    @app.task(name=TASK_AUDIO_STREAM, ignore_result=True)
    def stream(request: dict[str, Any]) -> None:
        service.stream(AudioStreamRequest.model_validate(request))

    @app.task(name=TASK_AUDIO_TRANSCRIBE, ignore_result=True)
    def transcribe(request: dict[str, Any]) -> None:
        service.transcribe(TranscribeRequest.model_validate(request))
