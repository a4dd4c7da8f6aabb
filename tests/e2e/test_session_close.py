"""A session closed just as the gateway relays a worker's event still ends: its keys and its slot go.

The gateway's relay of worker events is a task that reads Redis in a loop. On Python 3.11 a cancel
that reaches it while redis-py is sending a command is lost, and before the fix the relay read on
forever: the session never closed, its keys stayed for `session_ttl_s` and it kept its place in the
key's count of open sessions. A client that leaves right after an event it waited for (here a
picture's description) hit that in most tries.
"""

import asyncio

from tests.helpers import Stack, realtime, wait_for
from tests.pictures import data_url, image_message, picture


async def test_sessions_closed_right_after_a_worker_event_are_gone(stack: Stack):
    client = stack.redis()
    url = data_url(picture("circle", "green"))
    for _ in range(6):
        async with realtime(stack.ws, temperature=None) as rt:
            session_id = rt.events[0]["session"]["id"]
            await rt.send(image_message(url, "What is it?"))
            await rt.until("conversation.item.done")  # relayed from the image worker; leave at once

        def closed(sid: str = session_id) -> bool:
            return not client.keys(f"mmtest:*{sid}*") and client.zscore("mmtest:quota:local:sessions", sid) is None

        await asyncio.to_thread(wait_for, closed, 5, f"session {session_id} closed")
