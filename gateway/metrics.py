"""`GET /metrics`: the gateway's Prometheus metrics, with queue depths read from the broker when scraped.

Queue depth is what operators scale workers on (docs/deploy.md); kombu keeps batch-priority tasks
of a queue in a list of their own, so each queue has two depths.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.services import Services
from shared.celery_app import QUEUE_AUDIO, QUEUE_DECODE, QUEUE_IMAGE, QUEUE_SPEECH, redis_queue_lists
from shared.metrics import ACTIVE_BATCHES, QUEUE_DEPTH

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    services: Services = request.app.state.services
    lists = redis_queue_lists(
        services.settings.celery_broker_url, (QUEUE_AUDIO, QUEUE_IMAGE, QUEUE_DECODE, QUEUE_SPEECH)
    )
    if lists:  # a Redis broker (RabbitMQ has its own queue metrics)
        broker = services.redis if services.settings.broker_url is None else None
        if broker is not None:
            for (queue, priority), key in lists.items():
                QUEUE_DEPTH.labels(queue, priority).set(await broker.llen(key))
    ACTIVE_BATCHES.set(await services.redis.scard(services.keys.batches_active()))
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
