"""The audio worker's Celery tasks: thin shells around `AudioService`."""

from __future__ import annotations

from typing import Any

from celery import Celery

from shared.celery_app import TASK_AUDIO_STREAM
from shared.messages import AudioStreamRequest
from workers.audio.service import AudioService


def register(app: Celery, service: AudioService) -> None:
    @app.task(name=TASK_AUDIO_STREAM, ignore_result=True)
    def stream(request: dict[str, Any]) -> None:
        service.stream(AudioStreamRequest.model_validate(request))
