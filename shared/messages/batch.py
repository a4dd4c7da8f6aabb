"""HTTP objects of the Files and Batch APIs (OpenAI's shapes), also read by `mmstream batch`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from shared.errors import ErrorCode
from shared.messages.base import StrictModel

FilePurpose = Literal["batch", "batch_output"]
BatchStatus = Literal[
    "validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling", "cancelled"
]
BatchEndpoint = Literal["/v1/chat/completions", "/v1/audio/transcriptions", "/v1/audio/speech"]
BATCH_ENDS: tuple[BatchStatus, ...] = ("failed", "completed", "expired", "cancelled")


class FileObject(StrictModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    expires_at: int | None = None
    filename: str
    purpose: FilePurpose
    status: Literal["processed"] = "processed"


class BatchRequestCounts(StrictModel):
    total: int = 0
    completed: int = 0
    failed: int = 0


class BatchError(StrictModel):
    code: ErrorCode
    message: str
    param: str | None = None
    line: int | None = None


class BatchErrors(StrictModel):
    object: Literal["list"] = "list"
    data: list[BatchError]


class BatchObject(StrictModel):
    id: str
    object: Literal["batch"] = "batch"
    endpoint: BatchEndpoint
    errors: BatchErrors | None = None
    input_file_id: str
    completion_window: str
    status: BatchStatus
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: BatchRequestCounts = Field(default_factory=BatchRequestCounts)
    metadata: dict[str, str] | None = None


class BatchLineResponse(StrictModel):
    status_code: int
    request_id: str
    body: dict[str, Any]


class BatchLineError(StrictModel):
    code: ErrorCode
    message: str


class BatchOutputLine(StrictModel):
    """One line of a batch's output or error file, keyed by the request's `custom_id`."""

    id: str
    custom_id: str | None
    response: BatchLineResponse | None = None
    error: BatchLineError | None = None
