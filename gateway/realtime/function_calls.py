"""A response's tool calls as Realtime items: `function_call` items and their arguments' events.

Each call becomes an output item of its own after the response's message (output index 1, 2, ...),
added to the conversation when its name is known, its arguments streamed as
`response.function_call_arguments.delta`, and done when the call is complete. The client runs the
function and answers with a `function_call_output` item, then `response.create`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import TypedDict

from redis.exceptions import RedisError

from gateway.tools.calls import CallArguments, CallDone, CallStarted
from shared.messages import (
    ConversationItemAdded,
    ConversationItemDone,
    FunctionCallItem,
    ResponseFunctionCallArgumentsDelta,
    ResponseFunctionCallArgumentsDone,
    ResponseOutputItemAdded,
    ResponseOutputItemDone,
    ServerEvent,
)
from shared.sessions import SessionStore

Send = Callable[[ServerEvent], Awaitable[None]]


class _CallRef(TypedDict):
    response_id: str
    item_id: str
    output_index: int
    call_id: str


class CallRelay:
    def __init__(
        self, send: Send, sessions: SessionStore, session_id: str, response_id: str, *, in_conversation: bool
    ) -> None:
        self._send = send
        self._sessions = sessions
        self._sid = session_id
        self._rid = response_id
        self._in_conversation = in_conversation
        self._running: dict[int, tuple[FunctionCallItem, str | None]] = {}  # call index -> (item, previous id)
        self.items: list[FunctionCallItem] = []  # in output order, as they end

    def _where(self, index: int, item: FunctionCallItem) -> _CallRef:
        return _CallRef(response_id=self._rid, item_id=item.id, output_index=1 + index, call_id=item.call_id)

    async def on(self, event: CallStarted | CallArguments | CallDone, *, complete: bool = True) -> None:
        """Send what the event means; `complete` is False when the reply stopped inside the call."""
        if isinstance(event, CallStarted):
            item = FunctionCallItem(call_id=event.call_id, name=event.name, status="in_progress")
            previous = await self._sessions.add_item(self._sid, item, None) if self._in_conversation else None
            self._running[event.index] = (item, previous)
            await self._send(ResponseOutputItemAdded(response_id=self._rid, output_index=1 + event.index, item=item))
            if self._in_conversation:
                await self._send(ConversationItemAdded(previous_item_id=previous, item=item))
        elif isinstance(event, CallArguments):
            item, _ = self._running[event.index]
            await self._send(ResponseFunctionCallArgumentsDelta(**self._where(event.index, item), delta=event.delta))
        else:
            started, previous = self._running.pop(event.index)
            item = started.model_copy(
                update={"arguments": event.arguments, "status": "completed" if complete else "incomplete"}
            )
            where = self._where(event.index, item)
            await self._send(ResponseFunctionCallArgumentsDone(**where, name=item.name, arguments=item.arguments))
            await self._send(ResponseOutputItemDone(response_id=self._rid, output_index=1 + event.index, item=item))
            if self._in_conversation:
                with contextlib.suppress(RedisError):  # Redis down: the reply fails anyway, and says so
                    await self._sessions.replace_item(self._sid, item)
                await self._send(ConversationItemDone(previous_item_id=previous, item=item))
            self.items.append(item)
