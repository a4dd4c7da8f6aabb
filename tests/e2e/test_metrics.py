"""Prometheus metrics: the gateway's /metrics and a worker's own port, after real traffic."""

from __future__ import annotations

import re

import httpx

from tests.helpers import free_port, realtime, running_stack, user_message, wait_for


def _value(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name}{labels} not in metrics"
    return float(match.group(1))


async def test_gateway_and_decoder_metrics(fresh_redis_url, tmp_path):
    with running_stack(fresh_redis_url, tmp_path, decoders=0, audio=0, image=0) as stack:
        port = free_port()
        stack.env["MMSTREAM_METRICS_PORT"] = str(port)
        stack.start_worker("decode", "decode-m")
        stack.wait_ready("decode", 1)
        async with realtime(stack.ws) as rt:
            await rt.send(user_message("What is the capital of France? Answer in one word."))
            await rt.send({"type": "response.create"})
            await rt.until("response.done")
            await rt.send({"type": "no.such.event"})
            await rt.until("error")
            async with httpx.AsyncClient() as client:
                gateway = (await client.get(f"{stack.http}/metrics")).text
                assert _value(gateway, "mmstream_active_sessions") == 1
        assert _value(gateway, "mmstream_time_to_first_token_seconds_count", '{route="realtime"}') == 1
        assert _value(gateway, "mmstream_errors_total", '{code="unknown_event"}') >= 1
        assert _value(gateway, "mmstream_queue_depth", '{priority="interactive",queue="decode"}') == 0
        assert _value(gateway, "mmstream_queue_depth", '{priority="batch",queue="image"}') == 0
        assert _value(gateway, "mmstream_active_batches") == 0

        def scraped() -> str:
            return httpx.get(f"http://127.0.0.1:{port}/metrics").text

        worker = wait_for(lambda: "mmstream_tasks_total{" in scraped() and scraped(), 10, "the task counted")
        assert _value(worker, "mmstream_tasks_total", '{outcome="success",task="decode.generate"}') == 1
        assert _value(worker, "mmstream_decoder_tokens_total") >= 1
        assert _value(worker, "mmstream_decoder_time_to_first_token_seconds_count") == 1
        assert _value(worker, "mmstream_decoder_active_sequences") == 0
