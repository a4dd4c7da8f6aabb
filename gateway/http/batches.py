"""`/v1/batches`, OpenAI-compatible: create, retrieve, list and cancel batches.

Creating a batch only records it (`validating`); a gateway's batch scheduler takes it up at once
and drives it to its end (see `gateway.batch.runner`).
"""

from __future__ import annotations

import re
import secrets
import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from gateway.auth import owner_of
from gateway.batch.store import MAX_WINDOW_S
from gateway.http.errors import documented
from gateway.http.files import list_page
from gateway.services import Services
from shared.errors import InvalidRequest
from shared.messages import BATCH_ENDS, BatchEndpoint, BatchObject

router = APIRouter(responses=documented(401, 429))

_WINDOW = re.compile(r"^(\d{1,6})([smh])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600}


class CreateBatch(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input_file_id: str = Field(max_length=128)
    endpoint: BatchEndpoint
    completion_window: str = Field("24h", description="OpenAI's '24h', or any number of s, m or h up to 7 days.")
    metadata: dict[str, str] | None = Field(None, max_length=16)


@router.post("/v1/batches", responses=documented(400, 404, 413))
async def create_batch(request: Request, body: CreateBatch) -> BatchObject:
    services: Services = request.app.state.services
    window = _window_s(body.completion_window)
    owner = owner_of(request.state)
    source = await services.files.get(body.input_file_id, owner)
    if source.purpose != "batch":
        raise InvalidRequest("The input file must have been uploaded with purpose 'batch'.", param="input_file_id")
    now = int(time.time())
    batch = BatchObject(
        id=f"batch_{secrets.token_hex(12)}",
        endpoint=body.endpoint,
        input_file_id=body.input_file_id,
        completion_window=body.completion_window,
        status="validating",
        created_at=now,
        expires_at=now + window,
        metadata=body.metadata,
    )
    await services.batches.create(batch, owner)
    request.app.state.batch_scheduler.wake()
    return batch


@router.get("/v1/batches", responses=documented(400))
async def list_batches(
    request: Request, limit: Annotated[int, Query(ge=1, le=100)] = 20, after: str | None = None
) -> dict[str, Any]:
    services: Services = request.app.state.services
    return list_page(await services.batches.page(owner=owner_of(request.state), limit=limit + 1, after=after), limit)


@router.get("/v1/batches/{batch_id}", responses=documented(404))
async def retrieve_batch(request: Request, batch_id: str) -> BatchObject:
    services: Services = request.app.state.services
    return await services.batches.get(batch_id, owner_of(request.state))


@router.post("/v1/batches/{batch_id}/cancel", responses=documented(400, 404))
async def cancel_batch(request: Request, batch_id: str) -> BatchObject:
    services: Services = request.app.state.services
    owner = owner_of(request.state)
    batch = await services.batches.get(batch_id, owner)
    if batch.status == "cancelling":
        return batch
    if batch.status in BATCH_ENDS:
        raise InvalidRequest(f"Cannot cancel a batch that is {batch.status}.", param="batch_id")
    await services.batches.transition(
        batch_id, "cancelling", ("validating", "in_progress"), cancelling_at=int(time.time())
    )
    return await services.batches.get(batch_id, owner)


def _window_s(text: str) -> int:
    match = _WINDOW.match(text)
    seconds = int(match.group(1)) * _UNIT_S[match.group(2)] if match else 0
    if not 0 < seconds <= MAX_WINDOW_S:
        raise InvalidRequest("completion_window must be like '24h' (at most 7 days).", param="completion_window")
    return seconds
