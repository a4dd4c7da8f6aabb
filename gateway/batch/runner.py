"""Drive one batch: validate its input, run its lines on the workers, write its output and error files.

    validating -> in_progress -> finalizing -> completed
        |              |-> expired                (the completion window ran out)
        |              '-> cancelling -> cancelled (POST /v1/batches/{id}/cancel)
        '-> failed                                 (no request could be read)

Only the gateway holding the batch's driver lease runs this, renewing the lease as it goes. Lines
run a few at a time, as many as a share of the live workers' slots, so interactive requests find
free slots, and at batch priority, so they go first in the queues. A line that fails transiently
is tried again after a pause; one that fails for good, or cannot be read, goes to the error file.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from gateway.batch.execute import Outcome, cancel_line, run_line
from gateway.batch.files import FileStore
from gateway.batch.lines import BadLine, Line, Parsed, parse
from gateway.batch.store import BatchStore
from gateway.services import Services
from shared.config import WorkerKind
from shared.errors import ErrorCode, NotFound
from shared.messages import (
    BatchEndpoint,
    BatchError,
    BatchErrors,
    BatchLineError,
    BatchLineResponse,
    BatchObject,
    BatchOutputLine,
    BatchStatus,
)
from shared.worker_presence import slots

log = logging.getLogger(__name__)

LEASE_MS = 10_000
_TICK_S = 0.5
_CAPACITY_EVERY_S = 5.0
# Whose slots a batch's lines take.
_WORKER_KIND: dict[BatchEndpoint, WorkerKind] = {
    "/v1/chat/completions": "decode",
    "/v1/audio/transcriptions": "audio",
    "/v1/audio/speech": "speech",
}
_RETRY_PAUSE_S = 2.0


class LeaseLost(Exception):
    """Another gateway drives this batch now."""


class BatchRunner:
    def __init__(self, services: Services, store: BatchStore, files: FileStore, batch_id: str, owner: str) -> None:
        self._services = services
        self._store = store
        self._files = files
        self._id = batch_id
        self._owner = owner
        self._running: dict[asyncio.Task[Outcome], Line] = {}
        self._capacity = 1
        self._capacity_at = 0.0
        self._renewed_at = time.monotonic()
        self._followed: set[int] = set()  # lines whose earlier attempt this driver has looked for

    async def drive(self) -> None:
        try:
            batch = await self._store.get(self._id)
            parsed = await self._read_input(batch)
            if parsed is None:
                return
            if batch.status == "validating":
                await self._store.set_total(self._id, len(parsed.lines))
                await self._store.transition(self._id, "in_progress", ("validating",), in_progress_at=int(time.time()))
            await self._run_lines(parsed.lines)
            await self._finalize(parsed.lines)
        except LeaseLost:
            log.info("batch %s: another gateway drives it now", self._id)
        except NotFound:
            await self._store.forget_active(self._id)  # the batch expired out of Redis
        finally:
            # Work in flight stays with the workers: whoever drives the batch next follows it.
            for task in self._running:
                task.cancel()
            await self._store.release(self._id, self._owner)

    # --- validating -----------------------------------------------------------------------------

    async def _read_input(self, batch: BatchObject) -> Parsed | None:
        """The input file's lines; None when the batch failed because none can be read."""
        try:
            data = await self._files.content(batch.input_file_id, None)
        except NotFound:
            await self._fail(batch, [BatchError(code="file_not_found", message="The input file no longer exists.")])
            return None
        s = self._services.settings
        parsed = await asyncio.to_thread(parse, data, batch.endpoint, s.max_batch_lines)
        if parsed.fatal:
            await self._fail(batch, parsed.fatal)
            return None
        return parsed

    async def _fail(self, batch: BatchObject, errors: list[BatchError]) -> None:
        if batch.status == "validating":
            await self._store.transition(
                self._id,
                "failed",
                ("validating",),
                failed_at=int(time.time()),
                errors=BatchErrors(data=errors).model_dump(mode="json"),
            )

    # --- in progress ----------------------------------------------------------------------------

    async def _run_lines(self, lines: list[Line | BadLine]) -> None:
        done = await self._store.done_lines(self._id)
        for bad in (line for line in lines if isinstance(line, BadLine) and line.index not in done):
            error = BatchLineError(code=bad.code, message=bad.message)
            await self._record(
                bad.index, BatchOutputLine(id=_line_id(self._id, bad.index), custom_id=bad.custom_id, error=error)
            )
        queue = [line for line in lines if isinstance(line, Line) and line.index not in done]
        retry_at: dict[int, float] = {}  # line index -> when it may go again
        while queue or self._running:
            batch = await self._store.get(self._id)
            if batch.status != "in_progress" or _expired(batch):
                await self._stop_running(batch)
                return
            await self._keep_lease()
            now = time.monotonic()
            ready = [line for line in queue if retry_at.get(line.index, 0.0) <= now]
            for line in ready[: max(0, await self._room() - len(self._running))]:
                queue.remove(line)
                self._running[asyncio.create_task(self._attempt(line))] = line
            if not self._running:
                await asyncio.sleep(_TICK_S)
                continue
            finished, _ = await asyncio.wait(self._running, timeout=_TICK_S, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                line = self._running.pop(task)
                outcome = task.result()
                attempts = await self._store.attempt(self._id, line.index) or 1
                if outcome.retry and attempts < self._services.settings.batch_max_attempts:
                    log.info(
                        "batch %s line %d: attempt %d failed (%d); again",
                        self._id,
                        line.index,
                        attempts,
                        outcome.status_code,
                    )
                    retry_at[line.index] = time.monotonic() + _RETRY_PAUSE_S * attempts
                    queue.append(line)
                else:
                    await self._record(line.index, _output_line(self._id, line, outcome))

    async def _attempt(self, line: Line) -> Outcome:
        """Follow the attempt an earlier driver started, or start the next one."""
        started = await self._store.attempt(self._id, line.index)
        if started is not None and line.index not in self._followed:
            self._followed.add(line.index)
            return await run_line(self._services, self._id, line, started, follow=True)
        self._followed.add(line.index)
        attempt = await self._store.next_attempt(self._id, line.index)
        return await run_line(self._services, self._id, line, attempt, follow=False)

    async def _record(self, index: int, line: BatchOutputLine) -> None:
        ok = line.response is not None and line.response.status_code == 200
        await self._store.record(self._id, index, line.model_dump_json(), ok=ok)

    async def _room(self) -> int:
        """How many lines may run at once: a share of the live workers' slots, at least one."""
        if time.monotonic() - self._capacity_at > _CAPACITY_EVERY_S:
            s = self._services.settings
            batch = await self._store.get(self._id)
            kind = _WORKER_KIND[batch.endpoint]
            total = await slots(self._services.redis, self._services.keys, kind)
            self._capacity = max(1, int(total * s.batch_decoder_share))
            self._capacity_at = time.monotonic()
        return self._capacity

    async def _keep_lease(self) -> None:
        if time.monotonic() - self._renewed_at < LEASE_MS / 4000:
            return
        if not await self._store.renew(self._id, self._owner, LEASE_MS):
            raise LeaseLost
        self._renewed_at = time.monotonic()

    async def _stop_running(self, batch: BatchObject) -> None:
        """Cancelled or expired: stop the lines in flight and wait for them to end."""
        reason = "batch_cancelled" if batch.status == "cancelling" else "batch_expired"
        for line in list(self._running.values()):
            attempt = await self._store.attempt(self._id, line.index)
            if attempt is not None:
                await cancel_line(self._services, self._id, line, attempt, reason)
        if self._running:
            await asyncio.wait(self._running, timeout=30)
        for task, line in list(self._running.items()):
            self._running.pop(task)
            if task.done() and not task.cancelled() and not task.result().cancelled:
                await self._record(line.index, _output_line(self._id, line, task.result()))

    # --- finalizing -----------------------------------------------------------------------------

    async def _finalize(self, lines: list[Line | BadLine]) -> None:
        batch = await self._store.get(self._id)
        now = int(time.time())
        end: BatchStatus
        source: BatchStatus
        unfinished: ErrorCode | None  # the code of the lines the batch ended before they ran
        if batch.status == "in_progress" and _expired(batch):
            end, source, stamp, unfinished = "expired", batch.status, "expired_at", "batch_expired"
        elif batch.status == "cancelling":
            end, source, stamp, unfinished = "cancelled", batch.status, "cancelled_at", "batch_cancelled"
        elif batch.status in ("in_progress", "finalizing"):
            await self._store.transition(self._id, "finalizing", ("in_progress",), finalizing_at=now)
            end, source, stamp, unfinished = "completed", "finalizing", "completed_at", None
        else:
            return
        await self._keep_lease()
        results = await self._store.results(self._id)
        outputs: list[str] = []
        errors: list[str] = []
        for line in lines:
            raw = results.get(line.index)
            if raw is None:
                custom_id = line.custom_id
                message = "The batch ended before this request ran." if unfinished else "No result."
                error = BatchLineError(code=unfinished or "server_error", message=message)
                errors.append(
                    BatchOutputLine(
                        id=_line_id(self._id, line.index), custom_id=custom_id, error=error
                    ).model_dump_json()
                )
                continue
            parsed = BatchOutputLine.model_validate_json(raw)
            ok = parsed.response is not None and parsed.response.status_code == 200
            (outputs if ok else errors).append(raw)
        fields: dict[str, object] = {stamp: now}
        if outputs:
            fields["output_file_id"] = await self._write(outputs, "output")
        if errors:
            fields["error_file_id"] = await self._write(errors, "error")
        await self._store.transition(self._id, end, (source,), **fields)
        log.info("batch %s %s: %d answered, %d errors", self._id, end, len(outputs), len(errors))

    async def _write(self, lines: Iterable[str], kind: str) -> str:
        data = ("\n".join(lines) + "\n").encode()
        name = f"{self._id}_{kind}.jsonl"
        owner = await self._store.owner(self._id)
        obj = await self._files.create(data, name, "batch_output", owner, file_id=f"file-{self._id}-{kind}")
        return obj.id


def _expired(batch: BatchObject) -> bool:
    return batch.expires_at is not None and time.time() >= batch.expires_at


def _line_id(batch_id: str, index: int) -> str:
    return f"batch_req_{batch_id}_{index}"


def _output_line(batch_id: str, line: Line, outcome: Outcome) -> BatchOutputLine:
    response = BatchLineResponse(status_code=outcome.status_code, request_id=outcome.request_id, body=outcome.body)
    return BatchOutputLine(id=_line_id(batch_id, line.index), custom_id=line.custom_id, response=response)
