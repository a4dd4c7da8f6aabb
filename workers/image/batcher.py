"""Micro-batching: pictures that arrive together are embedded in one forward pass.

Task threads hand their preprocessed picture to `submit` and wait on the returned future. One
thread takes the first waiting picture, gathers more for up to `max_wait_s` or until `max_batch`,
and runs the model once for all of them.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future

import torch

from shared.metrics import IMAGE_BATCH_SECONDS, IMAGE_BATCH_SIZE, timed

log = logging.getLogger(__name__)


class MicroBatcher:
    def __init__(self, run: Callable[[torch.Tensor], torch.Tensor], *, max_batch: int, max_wait_s: float) -> None:
        self._run = run
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self._inbox: queue.Queue[tuple[torch.Tensor, Future[torch.Tensor]] | None] = queue.Queue()
        self.batch_sizes: Counter[int] = Counter()
        self._thread = threading.Thread(target=self._loop, name="clip-batcher", daemon=True)
        self._thread.start()

    def submit(self, pixels: torch.Tensor) -> Future[torch.Tensor]:
        future: Future[torch.Tensor] = Future()
        self._inbox.put((pixels, future))
        return future

    def stop(self) -> None:
        self._inbox.put(None)
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while True:
            first = self._inbox.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + self._max_wait_s
            while len(batch) < self._max_batch:
                try:
                    item = self._inbox.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    self._inbox.put(None)
                    break
                batch.append(item)
            self._process(batch)

    def _process(self, batch: list[tuple[torch.Tensor, Future[torch.Tensor]]]) -> None:
        self.batch_sizes[len(batch)] += 1
        IMAGE_BATCH_SIZE.observe(len(batch))
        try:
            with timed(IMAGE_BATCH_SECONDS.observe):
                out = self._run(torch.stack([pixels for pixels, _ in batch]))
        except Exception as exc:
            log.exception("embedding a batch of %d failed", len(batch))
            for _, future in batch:
                future.set_exception(exc)
            return
        for row, (_, future) in zip(out, batch, strict=True):
            future.set_result(row)
