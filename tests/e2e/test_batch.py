"""The Files and Batch APIs through the whole service, with the official openai SDK."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import openai
import pytest
from openai import AsyncOpenAI
from openai.types import Batch

from tests.helpers import Stack, running_stack
from tests.pictures import data_url, picture
from tests.speech import silence, speak, wav_bytes

MODEL = "qwen2.5-coder-0.5b-instruct"
CAPITALS = {"France": "Paris", "Italy": "Rome", "Japan": "Tokyo", "Germany": "Berlin", "Spain": "Madrid"}


def chat_line(custom_id: str, content: Any, max_tokens: int = 12) -> str:
    body = {"model": MODEL, "messages": [{"role": "user", "content": content}], "temperature": 0}
    body["max_tokens"] = max_tokens
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body})


def capital_line(country: str, n: int = 0) -> str:
    return chat_line(f"{country}-{n}", f"What is the capital of {country}? Answer in one word.")


async def upload(client: AsyncOpenAI, lines: list[str]) -> str:
    data = ("\n".join(lines) + "\n").encode()
    return (await client.files.create(file=("requests.jsonl", data), purpose="batch")).id


async def until(done: Callable[[Batch], bool], client: AsyncOpenAI, batch_id: str, timeout: float = 240) -> Batch:
    """Poll a batch until `done` says so."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = await client.batches.retrieve(batch_id)
        if done(batch):
            return batch
        await asyncio.sleep(0.3)  # noqa: ASYNC110 - polling another process over HTTP
    raise TimeoutError(f"batch {batch_id} still {batch.status}")


async def finished(client: AsyncOpenAI, batch_id: str, timeout: float = 240) -> Batch:
    return await until(lambda b: b.status in ("completed", "failed", "cancelled", "expired"), client, batch_id, timeout)


async def read_lines(client: AsyncOpenAI, file_id: str | None) -> dict[str, dict[str, Any]]:
    if file_id is None:
        return {}
    text = (await client.files.content(file_id)).text
    lines = [json.loads(t) for t in text.splitlines() if t.strip()]
    by_id = {line["custom_id"] or line["id"]: line for line in lines}
    assert len(by_id) == len(lines), "a custom_id appears twice"
    return by_id


@pytest.fixture
async def client(stack: Stack):
    async with AsyncOpenAI(base_url=f"{stack.http}/v1", api_key="not-needed", max_retries=0) as c:
        yield c


async def test_a_batch_with_pictures_speech_and_bad_lines(stack: Stack, client: AsyncOpenAI):
    red = [
        {"type": "image_url", "image_url": {"url": data_url(picture("circle", "red"))}},
        {"type": "text", "text": "What colour is the shape in the picture? Answer with one word."},
    ]
    wav = base64.b64encode(wav_bytes(speak("What is the capital of France?") + silence(0.3))).decode()
    spoken = [{"type": "input_audio", "input_audio": {"data": wav, "format": "wav"}}]
    lines = [
        capital_line("Italy"),
        chat_line("picture", red),
        "{this is not json",
        json.dumps({"custom_id": "elsewhere", "method": "POST", "url": "/v1/embeddings", "body": {}}),
        chat_line("spoken", spoken, max_tokens=24),
        json.dumps({"custom_id": "no-model", "method": "POST", "url": "/v1/chat/completions", "body": {}}),
        capital_line("Japan"),
    ]
    file_id = await upload(client, lines)
    assert (await client.files.retrieve(file_id)).purpose == "batch"
    created = await client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h", metadata={"run": "test"}
    )
    assert created.status == "validating" and created.metadata == {"run": "test"}
    batch = await finished(client, created.id)
    assert batch.status == "completed", batch
    assert batch.request_counts is not None
    assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (7, 4, 3)
    assert batch.in_progress_at and batch.finalizing_at and batch.completed_at

    out = await read_lines(client, batch.output_file_id)
    assert set(out) == {"Italy-0", "picture", "spoken", "Japan-0"}

    def answer(custom_id: str) -> str:
        response = out[custom_id]["response"]
        assert response["status_code"] == 200
        return str(response["body"]["choices"][0]["message"]["content"])

    assert "Rome" in answer("Italy-0") and "Tokyo" in answer("Japan-0")
    assert "red" in answer("picture").lower()
    assert "Paris" in answer("spoken")
    media = out["picture"]["response"]["body"]["input_media"]
    assert "colour: red" in media[0]["description"]
    assert "capital" in out["spoken"]["response"]["body"]["input_media"][0]["transcript"].lower()

    errors = await read_lines(client, batch.error_file_id)
    assert {line["custom_id"] for line in errors.values()} == {None, "elsewhere", "no-model"}
    assert errors["elsewhere"]["error"]["code"] == "invalid_url"
    assert errors["no-model"]["error"]["code"] == "missing_required_parameter"
    assert any(line["error"]["code"] == "invalid_json" for line in errors.values())

    listed = await client.batches.list(limit=5)
    assert created.id in [b.id for b in listed.data]


async def test_a_transcription_batch(stack: Stack, client: AsyncOpenAI):
    wav = base64.b64encode(wav_bytes(speak("The quick brown fox jumps over the lazy dog.") + silence(0.3))).decode()
    lines = [
        json.dumps(
            {
                "custom_id": "fox",
                "method": "POST",
                "url": "/v1/audio/transcriptions",
                "body": {"model": "whisper-1", "file": f"data:audio/wav;base64,{wav}"},
            }
        ),
        json.dumps(
            {
                "custom_id": "noise",
                "method": "POST",
                "url": "/v1/audio/transcriptions",
                "body": {"model": "whisper-1", "file": base64.b64encode(b"not audio at all" * 64).decode()},
            }
        ),
    ]
    created = await client.batches.create(
        input_file_id=await upload(client, lines), endpoint="/v1/audio/transcriptions", completion_window="24h"
    )
    batch = await finished(client, created.id)
    assert batch.status == "completed"
    out = await read_lines(client, batch.output_file_id)
    assert "fox" in out["fox"]["response"]["body"]["text"].lower()
    errors = await read_lines(client, batch.error_file_id)
    assert errors["noise"]["response"]["status_code"] == 400
    assert errors["noise"]["response"]["body"]["error"]["code"] == "invalid_audio"


async def test_cancelling_a_batch_keeps_what_finished(stack: Stack, client: AsyncOpenAI):
    lines = [chat_line(f"count-{n}", "Count from 1 to 50, separated by commas.", max_tokens=150) for n in range(12)]
    created = await client.batches.create(
        input_file_id=await upload(client, lines), endpoint="/v1/chat/completions", completion_window="24h"
    )
    await until(lambda b: b.status == "in_progress", client, created.id)
    cancelling = await client.batches.cancel(created.id)
    assert cancelling.status in ("cancelling", "cancelled")
    batch = await finished(client, created.id, timeout=60)
    assert batch.status == "cancelled" and batch.cancelled_at and batch.cancelling_at
    assert batch.request_counts is not None and batch.request_counts.completed < 12
    out = await read_lines(client, batch.output_file_id)
    errors = await read_lines(client, batch.error_file_id)
    assert len(out) == batch.request_counts.completed
    assert set(out) | set(errors) == {f"count-{n}" for n in range(12)} and not set(out) & set(errors)
    assert all(line["error"]["code"] == "batch_cancelled" for line in errors.values())
    with pytest.raises(openai.BadRequestError):
        await client.batches.cancel(created.id)


async def test_a_batch_past_its_window_expires(stack: Stack, client: AsyncOpenAI):
    lines = [chat_line(f"long-{n}", "Count from 1 to 80, separated by commas.", max_tokens=250) for n in range(8)]
    created = await client.batches.create(
        input_file_id=await upload(client, lines), endpoint="/v1/chat/completions", completion_window="3s"
    )
    batch = await finished(client, created.id, timeout=60)
    assert batch.status == "expired" and batch.expired_at
    errors = await read_lines(client, batch.error_file_id)
    assert errors and all(line["error"]["code"] == "batch_expired" for line in errors.values())


async def test_files_api(stack: Stack, client: AsyncOpenAI):
    file_id = await upload(client, [capital_line("Spain")])
    assert file_id in [f.id for f in (await client.files.list(purpose="batch")).data]
    assert (await client.files.content(file_id)).text.startswith('{"custom_id": "Spain-0"')
    deleted = await client.files.delete(file_id)
    assert deleted.deleted and deleted.id == file_id
    with pytest.raises(openai.NotFoundError):
        await client.files.retrieve(file_id)
    with pytest.raises(openai.BadRequestError) as wrong_purpose:
        await client.files.create(file=("x.jsonl", b"{}\n"), purpose="fine-tune")
    assert wrong_purpose.value.body["param"] == "purpose"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        await client.batches.create(
            input_file_id="file-missing", endpoint="/v1/chat/completions", completion_window="24h"
        )
    with pytest.raises(openai.BadRequestError):
        await client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="soon")  # type: ignore[arg-type]


async def test_a_batch_survives_a_killed_decoder_and_a_restarted_gateway(fresh_redis_url, tmp_path):
    settings = {"lease_ttl_s": "1.5", "decoder_concurrency": "2"}
    with running_stack(fresh_redis_url, tmp_path, decoders=1, audio=0, image=0, **settings) as stack:
        async with AsyncOpenAI(base_url=f"{stack.http}/v1", api_key="x", max_retries=3) as client:
            lines = [capital_line(country, n) for n in range(3) for country in CAPITALS]
            lines += [chat_line(f"count-{n}", "Count from 1 to 30, separated by commas.", 90) for n in range(3)]
            created = await client.batches.create(
                input_file_id=await upload(client, lines), endpoint="/v1/chat/completions", completion_window="24h"
            )

            def completed_at_least(n: int) -> Callable[[Batch], bool]:
                return lambda b: b.request_counts is not None and b.request_counts.completed >= n

            await until(completed_at_least(3), client, created.id, 120)
            os.killpg(stack.procs["decode-0"].pid, signal.SIGKILL)  # mid-line: its work is redone elsewhere
            stack.procs.pop("decode-0").wait()
            stack.start_worker("decode", "decode-1")
            await until(completed_at_least(8), client, created.id, 180)
            stack.stop("gateway")  # the batch's driver goes away; the next gateway takes the batch over
            stack.start_gateway()
        async with AsyncOpenAI(base_url=f"{stack.http}/v1", api_key="x", max_retries=3) as client:
            batch = await finished(client, created.id, timeout=300)
            assert batch.status == "completed", stack.logs()
            out = await read_lines(client, batch.output_file_id)  # asserts each custom_id is there once
            assert batch.request_counts is not None
            assert batch.request_counts.completed == len(lines) == len(out), stack.logs()
            assert batch.error_file_id is None
            for country, city in CAPITALS.items():
                for n in range(3):
                    assert city in out[f"{country}-{n}"]["response"]["body"]["choices"][0]["message"]["content"]
