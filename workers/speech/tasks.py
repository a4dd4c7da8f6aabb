"""The speech worker's Celery task: a thin shell around `SpeechService`."""

from __future__ import annotations

from typing import Any

from celery import Celery

from shared.celery_app import TASK_SPEECH_SYNTHESIZE
from shared.messages import SynthesizeRequest
from workers.speech.service import SpeechService

SERVICE = SpeechService


def register(app: Celery, service: SpeechService) -> None:
    @app.task(name=TASK_SPEECH_SYNTHESIZE, ignore_result=True)
    def synthesize(request: dict[str, Any]) -> None:
        service.synthesize(SynthesizeRequest.model_validate(request))
