"""The decoder's Celery task: a thin shell around `DecoderService.generate`."""

from __future__ import annotations

from typing import Any

from celery import Celery

from shared.celery_app import TASK_DECODE_GENERATE
from shared.messages import GenerateRequest
from workers.decoder.service import DecoderService

SERVICE = DecoderService


def register(app: Celery, service: DecoderService) -> None:
    @app.task(name=TASK_DECODE_GENERATE, ignore_result=True)
    def generate(request: dict[str, Any]) -> None:
        # A malformed payload raises here and is logged by Celery; it is not retried.
        service.generate(GenerateRequest.model_validate(request))
