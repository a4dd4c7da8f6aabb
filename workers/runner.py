"""Start one worker process of a given kind: thread limits, Celery app, tasks, presence.

Model workers use Celery's `threads` pool: the model lives once in the process (never forked after
it is loaded, which CUDA forbids) and each pool thread runs one task. The model is loaded by a
warm-up thread once the worker is ready, or by the first task, whichever comes first.
"""

from __future__ import annotations

import faulthandler
import importlib
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import redis
from celery.signals import worker_ready, worker_shutting_down

from shared import recovery
from shared.celery_app import QUEUE_AUDIO, QUEUE_DECODE, QUEUE_IMAGE, QUEUE_SPEECH, create_celery
from shared.config import Settings, WorkerKind
from shared.exits import EXIT_CANNOT_LOAD
from shared.keys import Keys
from workers.presence import Presence, worker_name

log = logging.getLogger(__name__)


def limit_threads(threads: int, omp_wait_policy: str = "passive") -> None:
    """Pin every math library's thread count before any of them loads.

    Workers share few cores: oversubscribed, spinning OpenMP threads ran many times slower here,
    so by default idle OpenMP threads sleep instead of busy-waiting.
    """
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    os.environ["OMP_WAIT_POLICY"] = omp_wait_policy.upper()


class WorkerService(Protocol):
    def warm_up(self) -> None: ...
    def shutdown(self) -> None: ...


@dataclass(frozen=True)
class _Kind:
    module: str  # defines SERVICE (the class) and register(app, service)
    queue: str
    threads: Callable[[Settings], tuple[int, str]]  # (threads, OpenMP wait policy)
    concurrency: Callable[[Settings], int]


_KINDS: dict[str, _Kind] = {
    "decode": _Kind(
        "workers.decoder.tasks",
        QUEUE_DECODE,
        lambda s: (s.decoder_threads, s.decoder_omp_wait_policy),
        lambda s: s.decoder_concurrency,
    ),
    "audio": _Kind(
        "workers.audio.tasks", QUEUE_AUDIO, lambda s: (s.audio_threads, "passive"), lambda s: s.audio_concurrency
    ),
    "image": _Kind(
        "workers.image.tasks", QUEUE_IMAGE, lambda s: (s.image_threads, "passive"), lambda s: s.image_concurrency
    ),
    "speech": _Kind(
        "workers.speech.tasks", QUEUE_SPEECH, lambda s: (s.speech_threads, "passive"), lambda s: s.speech_concurrency
    ),
}


def run_worker(kind: WorkerKind, settings: Settings, name: str | None = None) -> int:
    """Run until shut down; the exit status: 0, or EXIT_CANNOT_LOAD when the model could not be loaded."""
    # A crash in native code (SIGILL, SIGSEGV...) prints the Python stack of every thread to stderr.
    faulthandler.enable()
    name = name or worker_name(kind)
    spec = _KINDS[kind]
    limit_threads(*spec.threads(settings))  # before the kind's libraries are imported
    client = redis.Redis.from_url(settings.redis_url)
    # A killed worker's record lapses soon: others then take over what it held (shared/recovery.py).
    presence = Presence(client, Keys(settings.key_prefix), kind, name, ttl_s=recovery.presence_ttl_s(settings))
    app = create_celery(settings)
    module = importlib.import_module(spec.module)
    service: WorkerService = module.SERVICE(settings, client, presence)
    module.register(app, service)
    queue, concurrency = spec.queue, spec.concurrency(settings)
    presence.note(concurrency=concurrency)  # the gateway sizes batch work by it

    def on_ready(**_: Any) -> None:
        if settings.metrics_port:
            from shared.metrics import serve_worker_metrics

            serve_worker_metrics(settings.metrics_port)
        presence.start()
        threading.Thread(target=_warm_up, args=(service, presence, failed), name="warm-up", daemon=True).start()

    def on_shutdown(**_: Any) -> None:
        service.shutdown()
        presence.stop()

    failed = threading.Event()
    worker_ready.connect(on_ready, weak=False)
    worker_shutting_down.connect(on_shutdown, weak=False)
    app.worker_main(
        [
            "worker",
            "-Q",
            queue,
            "-P",
            "threads",
            "-c",
            str(concurrency),
            "-n",
            f"{name}@%h",
            "--prefetch-multiplier",
            "1",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            settings.log_level,
        ]
    )
    return EXIT_CANNOT_LOAD if failed.is_set() else 0


def _warm_up(service: WorkerService, presence: Presence, failed: threading.Event) -> None:
    try:
        service.warm_up()
    except Exception as exc:
        log.critical("could not load the model: %s; stopping this worker", exc, exc_info=True)
        failed.set()
        presence.fail(f"could not load its model: {exc}")
        os.kill(os.getpid(), 15)
