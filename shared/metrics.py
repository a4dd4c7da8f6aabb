"""Every Prometheus metric of the service, in one place.

The gateway serves its own at `GET /metrics` (queue depths and active batches are read from Redis
when scraped); each worker process serves its own on `MMSTREAM_METRICS_PORT` when that is set.
The metric objects live in the process's default registry; defining them loads nothing heavy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

_LATENCY = (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0)

# --- gateway ----------------------------------------------------------------------------------------
QUEUE_DEPTH = Gauge("mmstream_queue_depth", "Tasks waiting in a broker queue.", ["queue", "priority"])
ACTIVE_SESSIONS = Gauge("mmstream_active_sessions", "Realtime websocket sessions open on this gateway.")
ACTIVE_BATCHES = Gauge("mmstream_active_batches", "Batches not yet ended.")
TIME_TO_FIRST_TOKEN = Histogram(
    "mmstream_time_to_first_token_seconds",
    "From the request to the reply's first text, as the client sees it.",
    ["route"],
    buckets=_LATENCY,
)
TIME_TO_FIRST_AUDIO = Histogram(
    "mmstream_time_to_first_audio_seconds",
    "From a spoken response's start to its first audio, as the client sees it.",
    ["route"],
    buckets=_LATENCY,
)
ERRORS = Counter("mmstream_errors_total", "Errors sent to clients, by code.", ["code"])

# --- workers ----------------------------------------------------------------------------------------
TASKS = Counter("mmstream_tasks_total", "Celery tasks run, by task and outcome.", ["task", "outcome"])
TASK_SECONDS = Histogram("mmstream_task_seconds", "Time a Celery task ran.", ["task"], buckets=_LATENCY)
DECODER_TOKENS = Counter("mmstream_decoder_tokens_total", "Tokens the decoder generated.")
DECODER_TOKENS_PER_S = Histogram(
    "mmstream_decoder_tokens_per_second",
    "Generation speed of one response.",
    buckets=(1, 2, 5, 10, 20, 30, 50, 75, 100, 200, 500),
)
DECODER_FIRST_TOKEN = Histogram(
    "mmstream_decoder_time_to_first_token_seconds",
    "From the prompt handed to the engine to its first token.",
    buckets=_LATENCY,
)
DECODER_ENGINE_CPU = Counter(
    "mmstream_decoder_engine_cpu_seconds_total",
    "CPU time of the decoder's engine thread, inside llama_decode and outside it (batches, sampling, text).",
    ["part"],
)
DECODER_ACTIVE = Gauge("mmstream_decoder_active_sequences", "Responses the decoder engine holds now.")
TRANSCRIPTION_SECONDS = Histogram(
    "mmstream_transcription_seconds",
    "Time to transcribe: a whole file or clip, or one streaming pass.",
    ["kind"],
    buckets=_LATENCY,
)
IMAGE_BATCH_SIZE = Histogram(
    "mmstream_image_batch_size", "Pictures embedded in one forward pass.", buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32)
)
IMAGE_MMPROJ = Counter(
    "mmstream_image_mmproj_total", "Pictures for a VLM's projector, by source: encoded, or from the cache.", ["source"]
)
IMAGE_BATCH_SECONDS = Histogram("mmstream_image_batch_seconds", "Time of one forward pass.", buckets=_LATENCY)
SPEECH_SECONDS = Histogram("mmstream_speech_seconds", "Time a speech worker took to speak one piece.", buckets=_LATENCY)
WORKER_ERRORS = Counter("mmstream_worker_errors_total", "Work that failed in a worker, by code.", ["kind", "code"])


@contextmanager
def timed(observe: Callable[[float], Any]) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        observe(time.perf_counter() - started)


def serve_worker_metrics(port: int) -> None:
    """Serve this process's metrics over HTTP (a thread of its own), and count its Celery tasks."""
    from celery.signals import task_postrun, task_prerun

    started: dict[str, float] = {}

    def before(task_id: str | None = None, **_: Any) -> None:
        if task_id is not None:
            started[task_id] = time.perf_counter()

    def after(task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any) -> None:
        name = getattr(task, "name", "unknown")
        TASKS.labels(name, (state or "unknown").lower()).inc()
        if task_id is not None and task_id in started:
            TASK_SECONDS.labels(name).observe(time.perf_counter() - started.pop(task_id))

    task_prerun.connect(before, weak=False)
    task_postrun.connect(after, weak=False)
    start_http_server(port)
    log.info("metrics on :%d/metrics", port)
