"""The one Celery app: JSON only, a queue per modality, late acks, time limits.

The gateway sends tasks by name (`send_task`) and never imports worker code; workers register
their tasks on the app this module builds.
"""

from __future__ import annotations

from typing import Final

from celery import Celery
from kombu import Queue

from shared.config import Settings

QUEUE_AUDIO: Final = "audio"
QUEUE_IMAGE: Final = "image"
QUEUE_DECODE: Final = "decode"

TASK_DECODE_GENERATE: Final = "decode.generate"
TASK_AUDIO_STREAM: Final = "audio.stream"
TASK_AUDIO_TRANSCRIBE: Final = "audio.transcribe"
TASK_IMAGE_DESCRIBE: Final = "image.describe"


def create_celery(settings: Settings) -> Celery:
    app = Celery("mmstream", broker=settings.celery_broker_url, set_as_current=False)
    app.conf.update(
        # JSON only: pickle on the broker would let anyone who can write to Redis run code here.
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        # Results travel on Redis Streams; nobody polls a result backend.
        task_ignore_result=True,
        # A model task is acknowledged when it ends, so a killed worker's task is delivered again;
        # prefetch 1 keeps waiting work in Redis, not in a busy worker's memory.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_s},
        task_time_limit=int(settings.decode_time_limit_s + 30),
        task_soft_time_limit=int(settings.decode_time_limit_s + 15),
        task_queues=[Queue(QUEUE_AUDIO), Queue(QUEUE_IMAGE), Queue(QUEUE_DECODE)],
        task_routes={
            "audio.*": {"queue": QUEUE_AUDIO},
            "image.*": {"queue": QUEUE_IMAGE},
            "decode.*": {"queue": QUEUE_DECODE},
        },
        task_default_queue=QUEUE_DECODE,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        enable_utc=True,
    )
    return app
