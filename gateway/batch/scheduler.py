"""The gateway's batch loop: take up every active batch no other gateway drives, and drive it.

Every gateway replica runs one. A batch is driven by whichever gateway holds its lease; when that
gateway stops (restart, crash) its leases lapse and another, or the same one started again, takes
the batches over within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket

from gateway.batch.files import FileStore
from gateway.batch.runner import LEASE_MS, BatchRunner
from gateway.batch.store import BatchStore
from gateway.services import Services

log = logging.getLogger(__name__)

_SCAN_S = 1.0


class BatchScheduler:
    def __init__(self, services: Services, store: BatchStore, files: FileStore) -> None:
        self._services = services
        self._store = store
        self._files = files
        self._owner = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        self._driving: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop().create_task(self._run(), name="batch-scheduler")

    def wake(self) -> None:
        """A batch was created here: look at once instead of at the next scan."""
        self._wake.set()

    async def stop(self) -> None:
        tasks = [t for t in (self._loop, *self._driving.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                await self._take_up()
            except Exception:  # Redis away for a moment: try again at the next scan
                log.warning("batch scan failed", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), _SCAN_S)
            self._wake.clear()

    async def _take_up(self) -> None:
        for batch_id, task in list(self._driving.items()):
            if task.done():
                del self._driving[batch_id]
                if not task.cancelled() and (exc := task.exception()) is not None:
                    log.error("batch %s: driver failed", batch_id, exc_info=exc)
        for batch_id in await self._store.active():
            if batch_id in self._driving or not await self._store.claim(batch_id, self._owner, LEASE_MS):
                continue
            log.info("batch %s: driving it", batch_id)
            runner = BatchRunner(self._services, self._store, self._files, batch_id, self._owner)
            self._driving[batch_id] = asyncio.get_running_loop().create_task(runner.drive(), name=f"batch-{batch_id}")
