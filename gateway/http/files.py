"""`/v1/files`, OpenAI-compatible: upload batch input files, read them and the outputs batches write.

Only `purpose=batch` may be uploaded; batch results appear with `purpose=batch_output`. Uploads
may be as large as `max_batch_file_bytes`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Query, Request, UploadFile
from fastapi.responses import Response

from gateway.auth import owner_of
from gateway.http.errors import documented
from gateway.services import Services
from shared.errors import TooLarge
from shared.messages import FileObject

router = APIRouter(responses=documented(401, 429))


@router.post("/v1/files", responses=documented(400, 413))
async def upload_file(request: Request, file: UploadFile, purpose: Annotated[Literal["batch"], Form()]) -> FileObject:
    services: Services = request.app.state.services
    limit = services.settings.max_batch_file_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(f"The file is larger than {limit} bytes.", param="file")
    return await services.files.create(data, file.filename or "upload.jsonl", "batch", owner_of(request.state))


@router.get("/v1/files", responses=documented(400))
async def list_files(
    request: Request,
    purpose: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 10_000,
    after: str | None = None,
    order: Literal["asc", "desc"] = "desc",
) -> dict[str, Any]:
    services: Services = request.app.state.services
    data = await services.files.page(
        owner=owner_of(request.state), purpose=purpose, limit=limit + 1, after=after, newest_first=order == "desc"
    )
    return list_page(data, limit)


@router.get("/v1/files/{file_id}", responses=documented(404))
async def retrieve_file(request: Request, file_id: str) -> FileObject:
    services: Services = request.app.state.services
    return await services.files.get(file_id, owner_of(request.state))


@router.get(
    "/v1/files/{file_id}/content",
    responses={200: {"content": {"application/jsonl": {}, "application/octet-stream": {}}}, **documented(404)},
)
async def file_content(request: Request, file_id: str) -> Response:
    services: Services = request.app.state.services
    obj = await services.files.get(file_id, owner_of(request.state))
    data = await services.files.content(file_id, owner_of(request.state))
    media_type = "application/jsonl" if obj.filename.endswith(".jsonl") else "application/octet-stream"
    return Response(data, media_type=media_type)


@router.delete("/v1/files/{file_id}", responses=documented(404))
async def delete_file(request: Request, file_id: str) -> dict[str, Any]:
    services: Services = request.app.state.services
    await services.files.delete(file_id, owner_of(request.state))
    return {"id": file_id, "object": "file", "deleted": True}


def list_page(data: list[Any], limit: int) -> dict[str, Any]:
    """An OpenAI list page: `data`, `has_more` and the ids at its ends."""
    page = data[:limit]
    return {
        "object": "list",
        "data": page,
        "has_more": len(data) > limit,
        "first_id": page[0].id if page else None,
        "last_id": page[-1].id if page else None,
    }
