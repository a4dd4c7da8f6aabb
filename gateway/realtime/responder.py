"""One response, from `response.created` to `response.done`, as Realtime server events.

The assistant item is added to the conversation when the response starts (so it keeps its place)
and rewritten with its text when the response ends, whatever the ending: a cancelled or cut-off
reply stays in the conversation as far as it got, as in the Realtime API.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypedDict

from redis.exceptions import RedisError

from shared.clients import DecoderClient
from shared.errors import REDIS_LOST
from shared.messages import (
    ConversationItemAdded,
    ConversationItemDone,
    GenerateRequest,
    MessageItem,
    OutputText,
    Response,
    ResponseContentPartAdded,
    ResponseContentPartDone,
    ResponseDone,
    ResponseFinal,
    ResponseOutputItemAdded,
    ResponseOutputItemDone,
    ResponseOutputTextDelta,
    ResponseOutputTextDone,
    ServerEvent,
    StatusDetails,
    StatusError,
    TextPart,
    TokenDelta,
    Usage,
    new_id,
)
from shared.metrics import TIME_TO_FIRST_TOKEN
from shared.sessions import SessionStore

log = logging.getLogger(__name__)

Send = Callable[[ServerEvent], Awaitable[None]]


class _PartRef(TypedDict):
    response_id: str
    item_id: str
    output_index: int
    content_index: int


async def stream_response(
    response: Response,
    request: GenerateRequest,
    *,
    decoder: DecoderClient,
    sessions: SessionStore,
    send: Send,
    in_conversation: bool,
) -> Response:
    """Run a response whose `response.created` is sent; send every later event, return the final state."""
    rid, sid = response.id, request.session_id
    item = MessageItem(id=new_id("item"), role="assistant", status="in_progress")
    previous = await sessions.add_item(sid, item, None) if in_conversation else None
    await send(ResponseOutputItemAdded(response_id=rid, output_index=0, item=item))
    if in_conversation:
        await send(ConversationItemAdded(previous_item_id=previous, item=item))
    where = _PartRef(response_id=rid, item_id=item.id, output_index=0, content_index=0)
    await send(ResponseContentPartAdded(**where, part=TextPart()))

    pieces: list[str] = []
    final = ResponseFinal(status="failed", error_code="server_error", error_message="No final event.")
    started = time.perf_counter()
    try:
        async for event in decoder.generate(request):
            if isinstance(event, ResponseFinal):
                final = event
            elif isinstance(event, TokenDelta) and event.text:
                if not pieces:
                    TIME_TO_FIRST_TOKEN.labels("realtime").observe(time.perf_counter() - started)
                pieces.append(event.text)
                await send(ResponseOutputTextDelta(**where, delta=event.text))
    except RedisError:
        # The reply travels through Redis: without it this one ends here, and the client hears why
        # (with the code the HTTP API gives the same failure).
        log.warning("response %s: lost Redis mid-reply", rid, exc_info=True)
        final = ResponseFinal(status="failed", error_code="redis_unavailable", error_message=REDIS_LOST)

    text = "".join(pieces)
    await send(ResponseOutputTextDone(**where, text=text))
    await send(ResponseContentPartDone(**where, part=TextPart(text=text)))
    item = item.model_copy(
        update={
            "status": "completed" if final.status == "completed" else "incomplete",
            "content": [OutputText(type="output_text", text=text)],
        }
    )
    await send(ResponseOutputItemDone(response_id=rid, output_index=0, item=item))
    if in_conversation:
        with contextlib.suppress(RedisError):  # still down: the item stays as the decoder left it
            await sessions.replace_item(sid, item)
        await send(ConversationItemDone(previous_item_id=previous, item=item))
    done = response.model_copy(
        update={
            "status": final.status,
            "status_details": _status_details(final),
            "output": [item],
            "usage": _usage(final),
        }
    )
    await send(ResponseDone(response=done))
    return done


def _status_details(final: ResponseFinal) -> StatusDetails | None:
    if final.status == "completed":
        return None
    error = None
    if final.status == "failed":
        error = StatusError(
            type="server_error",
            code=final.error_code or "server_error",
            message=final.error_message or "The response failed.",
        )
    return StatusDetails(type=final.status, reason=final.reason, error=error)


def _usage(final: ResponseFinal) -> Usage:
    u = final.usage
    usage = Usage(
        input_tokens=u.input_tokens, output_tokens=u.output_tokens, total_tokens=u.input_tokens + u.output_tokens
    )
    usage.input_token_details.text_tokens = u.input_tokens
    usage.input_token_details.cached_tokens = u.cached_tokens
    usage.output_token_details.text_tokens = u.output_tokens
    return usage
