"""The one Celery app: JSON only, a queue per modality, late acks, time limits, two priorities.

The gateway sends tasks by name (`send`) and never imports worker code; workers register their
tasks on the app this module builds. Batch work is sent at a lower priority than interactive work
on the same queues, so a free worker always takes a waiting person's task first.
"""

from __future__ import annotations

from typing import Any, Final

from celery import Celery
from kombu import Queue

from shared import redis_transport
from shared.config import Settings
from shared.messages import Priority

QUEUE_AUDIO: Final = "audio"
QUEUE_IMAGE: Final = "image"
QUEUE_DECODE: Final = "decode"
QUEUE_SPEECH: Final = "speech"

TASK_DECODE_GENERATE: Final = "decode.generate"
TASK_AUDIO_STREAM: Final = "audio.stream"
TASK_AUDIO_TRANSCRIBE: Final = "audio.transcribe"
TASK_IMAGE_DESCRIBE: Final = "image.describe"
TASK_SPEECH_SYNTHESIZE: Final = "speech.synthesize"

# Redis keeps one list per priority step and pops the lowest number first; AMQP brokers deliver
# the highest number first, from queues declared with x-max-priority.
_REDIS_PRIORITY: Final[dict[Priority, int]] = {"interactive": 0, "batch": 9}
_AMQP_PRIORITY: Final[dict[Priority, int]] = {"interactive": 9, "batch": 0}
_KOMBU_SEP: Final = "\x06\x16"  # kombu's separator between a queue's name and its priority step


def _is_amqp(broker_url: str) -> bool:
    return broker_url.split("://", 1)[0] in ("amqp", "amqps", "pyamqp")


def create_celery(settings: Settings) -> Celery:
    redis_transport.install()  # survives Redis restarting under a running task
    app = Celery("mmstream", broker=settings.celery_broker_url, set_as_current=False)
    amqp = _is_amqp(settings.celery_broker_url)
    queue_args = {"x-max-priority": 9} if amqp else None
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
        # Off: cancelling on a broker connection loss acks on the dead channel and kills the worker
        # (celery/celery#9250, seen here with Redis restarted mid-reply). Our tasks notice the loss
        # themselves (their Redis calls fail or their lease lapses) and a copy is harmless.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_s,
            "priority_steps": sorted(_REDIS_PRIORITY.values()),
        },
        task_time_limit=int(settings.decode_time_limit_s + 30),
        task_soft_time_limit=int(settings.decode_time_limit_s + 15),
        task_queues=[
            Queue(q, queue_arguments=queue_args) for q in (QUEUE_AUDIO, QUEUE_IMAGE, QUEUE_DECODE, QUEUE_SPEECH)
        ],
        task_routes={
            "audio.*": {"queue": QUEUE_AUDIO},
            "image.*": {"queue": QUEUE_IMAGE},
            "decode.*": {"queue": QUEUE_DECODE},
            "speech.*": {"queue": QUEUE_SPEECH},
        },
        task_default_queue=QUEUE_DECODE,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        enable_utc=True,
    )
    return app


def send(app: Celery, task: str, payload: dict[str, Any], priority: Priority = "interactive") -> None:
    """Publish a task by name with its payload as the one keyword argument (blocking: run it in a thread)."""
    table = _AMQP_PRIORITY if _is_amqp(app.conf.broker_url or "") else _REDIS_PRIORITY
    app.send_task(task, kwargs={"request": payload}, priority=table[priority])


def redis_queue_lists(broker_url: str, queues: tuple[str, ...]) -> dict[tuple[str, Priority], str]:
    """The Redis list holding each queue's tasks of each priority; empty for an AMQP broker."""
    if _is_amqp(broker_url):
        return {}
    lists: dict[tuple[str, Priority], str] = {}
    for queue in queues:
        for priority, step in _REDIS_PRIORITY.items():
            lists[(queue, priority)] = queue if step == 0 else f"{queue}{_KOMBU_SEP}{step}"
    return lists
