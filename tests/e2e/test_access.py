"""API keys on every route and on the websocket; one key cannot see another's files or batches."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import httpx
import openai
import pytest
import websockets
from openai import AsyncOpenAI

from tests.helpers import free_port, running_stack, wait_for

KEY_A, KEY_B = "sk-test-alpha-0123456789", "sk-test-beta-9876543210"


def _lan_address() -> str | None:
    """An address of this machine that is not loopback, if it has one."""
    out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, check=False).stdout.split()
    return next((a for a in out if "." in a and not a.startswith("127.")), None)


async def test_keys_guard_http_and_websocket(fresh_redis_url, tmp_path):
    keys = json.dumps([KEY_A, KEY_B])
    with running_stack(fresh_redis_url, tmp_path, decoders=0, audio=0, image=0, api_keys=keys) as stack:
        async with httpx.AsyncClient(base_url=stack.http) as http:
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/readyz")).status_code in (200, 503)  # open, whatever it says
            assert (await http.get("/")).status_code == 200  # the page itself holds nothing
            for path in ("/v1/models", "/v1/files", "/v1/batches", "/metrics"):
                refused = await http.get(path)
                assert refused.status_code == 401, path
                assert refused.json()["error"]["code"] == "invalid_api_key"
                assert refused.headers["www-authenticate"] == "Bearer"
            wrong = await http.get("/v1/models", headers={"authorization": "Bearer sk-wrong-key"})
            assert wrong.status_code == 401 and "sk-wrong-key" not in wrong.text
            ok = await http.get("/v1/models", headers={"authorization": f"Bearer {KEY_A}"})
            assert ok.status_code == 200

        # The websocket: refused without a key; a header or the browser's subprotocol lets one in.
        with pytest.raises(websockets.InvalidStatus) as refused_ws:
            async with websockets.connect(stack.ws):
                pass
        assert refused_ws.value.response.status_code == 403
        # `mmstream chat` without MMSTREAM_API_KEY says what is missing.
        env = {k: v for k, v in stack.env.items() if k != "MMSTREAM_API_KEY"}
        chat = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "cli.main", "chat", "--url", stack.ws, "--once", "Hi"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert chat.returncode == 1 and "set MMSTREAM_API_KEY" in chat.stderr, chat.stderr
        async with websockets.connect(stack.ws, additional_headers={"Authorization": f"Bearer {KEY_B}"}) as ws:
            assert json.loads(await ws.recv())["type"] == "session.created"
        protocols = ["realtime", f"openai-insecure-api-key.{KEY_A}"]
        async with websockets.connect(stack.ws, subprotocols=protocols) as ws:  # type: ignore[arg-type]
            assert ws.subprotocol == "realtime"  # the key is not echoed back
            assert json.loads(await ws.recv())["type"] == "session.created"

        # Files and batches belong to the key that made them.
        async with (
            AsyncOpenAI(base_url=f"{stack.http}/v1", api_key=KEY_A, max_retries=0) as alice,
            AsyncOpenAI(base_url=f"{stack.http}/v1", api_key=KEY_B, max_retries=0) as bob,
        ):
            line = {"custom_id": "x", "method": "POST", "url": "/v1/chat/completions", "body": {}}
            upload = await alice.files.create(file=("a.jsonl", json.dumps(line).encode()), purpose="batch")
            batch = await alice.batches.create(
                input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
            )
            assert (await alice.files.retrieve(upload.id)).id == upload.id
            with pytest.raises(openai.NotFoundError):
                await bob.files.retrieve(upload.id)
            with pytest.raises(openai.NotFoundError):
                await bob.files.content(upload.id)
            with pytest.raises(openai.NotFoundError):
                await bob.files.delete(upload.id)
            with pytest.raises(openai.NotFoundError):
                await bob.batches.retrieve(batch.id)
            with pytest.raises(openai.NotFoundError):
                await bob.batches.cancel(batch.id)
            with pytest.raises(openai.NotFoundError):  # nor can Bob start a batch on Alice's file
                await bob.batches.create(
                    input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
                )
            assert [f.id for f in (await bob.files.list()).data] == []
            assert [b.id for b in (await bob.batches.list()).data] == []
            assert batch.id in [b.id for b in (await alice.batches.list()).data]
            done = await alice.batches.retrieve(batch.id)
            while done.status not in ("completed", "failed"):
                done = await alice.batches.retrieve(batch.id)
            assert done.error_file_id is not None
            await alice.files.retrieve(done.error_file_id)  # the batch's output belongs to its owner
            with pytest.raises(openai.NotFoundError):
                await bob.files.retrieve(done.error_file_id)
        logs = stack.logs()
        assert KEY_A not in logs and KEY_B not in logs and "sk-wrong-key" not in logs


def test_without_keys_only_this_machine_is_served(fresh_redis_url, tmp_path):
    address = _lan_address()
    if address is None:
        pytest.skip("this machine has no address besides loopback")
    with running_stack(fresh_redis_url, tmp_path, decoders=0, audio=0, image=0, gateway=False) as stack:
        port = free_port()
        stack.env.update({"MMSTREAM_HOST": "0.0.0.0", "MMSTREAM_PORT": str(port)})
        stack.start("gateway", "gateway")
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), 30, "the gateway")
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models").status_code == 200
        assert httpx.get(f"http://{address}:{port}/healthz").status_code == 200
        from_afar = httpx.get(f"http://{address}:{port}/v1/models")
        assert from_afar.status_code == 401
        assert "only clients on this machine are served" in stack.logs()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
