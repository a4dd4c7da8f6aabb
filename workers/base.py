"""What every model worker service shares: settings, Redis, presence, and a model loaded once.

The model is built once per process on first use (a task, or the warm-up that runs once the Celery
worker is ready), never at import; until then `/readyz` reports the worker as still loading.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Generic, TypeVar

import redis

from shared.config import Settings
from shared.keys import Keys
from workers.presence import Presence

log = logging.getLogger(__name__)

T = TypeVar("T")


class ModelService(Generic[T]):
    what = "model"

    def __init__(self, settings: Settings, client: redis.Redis, presence: Presence) -> None:
        self._settings = settings
        self._keys = Keys(settings.key_prefix)
        self._r = client
        self._presence = presence
        self._lock = threading.Lock()
        self._models: T | None = None

    def _build(self) -> T:
        raise NotImplementedError

    def _identity(self, models: T) -> dict[str, Any]:
        """What the presence record says about the loaded model (name, sha256, path)."""
        raise NotImplementedError

    def _load(self) -> T:
        with self._lock:
            if self._models is None:
                started = time.monotonic()
                self._models = self._build()
                log.info("loaded the %s in %.1f s", self.what, time.monotonic() - started)
            return self._models

    def warm_up(self) -> None:
        self._presence.update(loaded=True, **self._identity(self._load()))

    def shutdown(self) -> None:
        """Stop background threads; tasks still running let go of their work."""
