"""The image worker's Celery task: a thin shell around `ImageService`."""

from __future__ import annotations

from typing import Any

from celery import Celery

from shared.celery_app import TASK_IMAGE_DESCRIBE
from shared.messages import DescribeImageRequest
from workers.image.service import ImageService

SERVICE = ImageService


def register(app: Celery, service: ImageService) -> None:
    @app.task(name=TASK_IMAGE_DESCRIBE, ignore_result=True)
    def describe(request: dict[str, Any]) -> None:
        service.describe(DescribeImageRequest.model_validate(request))
