"""A decoder worker killed with SIGKILL mid-reply: another worker finishes the same reply."""

import json
import os
import re
import signal

from tests.helpers import realtime as connect
from tests.helpers import running_stack, user_message


def _numbers(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", text)]


async def test_killed_decoder_reply_is_completed_by_another(fresh_redis_url, tmp_path):
    with running_stack(fresh_redis_url, tmp_path, decoders=2, audio=0, image=0, lease_ttl_s="1.5") as stack:
        async with connect(stack.ws) as rt:
            await rt.send(user_message("Count from 1 to 60, separated by commas, with no other text."))
            await rt.send({"type": "response.create", "response": {"max_output_tokens": 400}})
            rid, text = "", ""
            while len(_numbers(text)) < 8:
                event = await rt.next()
                if event["type"] == "response.created":
                    rid = event["response"]["id"]
                elif event["type"] == "response.output_text.delta":
                    text += event["delta"]
            victim_pid = int(stack.redis().hget(f"mmtest:response:{rid}", "owner_pid") or 0)
            assert victim_pid in {p.pid for p in stack.procs.values()}
            os.kill(victim_pid, signal.SIGKILL)
            events = await rt.until("response.done", timeout=60)
            # Read while the session is open: its responses' keys go when it closes.
            record = stack.redis().hgetall(f"mmtest:response:{rid}")
        text += "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
        done = events[-1]["response"]
        assert done["status"] == "completed", json.dumps(done)
        numbers = _numbers(text)
        assert numbers == list(range(1, len(numbers) + 1)), text  # nothing lost, nothing repeated
        assert len(numbers) >= 30, text
        new_pid = int(record.get("owner_pid") or 0)
        assert new_pid != victim_pid and new_pid in {p.pid for p in stack.procs.values()}
        assert record.get("attempt") == "2"
