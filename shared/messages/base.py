"""What every message family shares: ids, the two model bases, and the final status of a response."""

from __future__ import annotations

import secrets
from typing import Literal

from pydantic import BaseModel, ConfigDict


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


def new_event_id() -> str:
    return new_id("event")


class ClientModel(BaseModel):
    """Client input: unknown fields are ignored so that newer clients keep working."""

    model_config = ConfigDict(extra="ignore")


class StrictModel(BaseModel):
    """What the service itself writes (server events, internal messages): no field goes unnoticed."""

    model_config = ConfigDict(extra="forbid")


# How a response ended: in `response.done` (realtime) and in the final entry of its stream (internal).
FinalStatus = Literal["completed", "cancelled", "incomplete", "failed"]
