"""`mmstream batch run PATH`: push a folder of pictures and recordings (or a JSONL of requests) through
the service's Batch API and write the results to a JSONL file.

Each picture or recording becomes one chat completion at batch priority: the picture with a
prompt, or the recording (its speech is the question, unless a prompt is given). A result line
holds what the workers made of the file (picture tags, transcript) and the answer. Files go in
batches of at most `--chunk`; each finished batch is appended to the output at once, and the batch
in flight is remembered beside the output, so a run interrupted in any way goes on where it
stopped when started again: finished files are skipped and a batch still running is followed,
not sent twice.
"""

from __future__ import annotations

import base64
import json
import mimetypes
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp"}
AUDIO_FORMATS = {".wav": "wav", ".mp3": "mp3"}
_ENDS = ("completed", "failed", "expired", "cancelled")
_MAX_CHUNK_BYTES = 50 << 20


@dataclass(frozen=True)
class BatchOptions:
    base_url: str  # http://host:port
    model: str
    out: Path
    image_prompt: str
    audio_prompt: str
    max_tokens: int
    chunk: int
    temperature: float = 0.0  # a batch answers the same when run again (the service's default samples)
    headers: dict[str, str] = field(default_factory=dict)  # the API key, when the service wants one
    poll_s: float = 1.0


@dataclass(frozen=True)
class Request:
    custom_id: str
    line: str  # the JSONL line sent
    kind: str  # image, audio or request (a line of the user's own JSONL)


class _Interrupted(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _interrupt(signum: int, _frame: object) -> None:
    raise _Interrupted(signum)


def run(path: Path, options: BatchOptions) -> int:
    # Ctrl-C and SIGTERM stop the run where it is, to be resumed. Set here, not left to Python's
    # default: a process started in the background of a script inherits SIGINT ignored, and Python
    # then never raises KeyboardInterrupt (the run went on to the end).
    previous = {signum: signal.signal(signum, _interrupt) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _run(path, options)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _run(path: Path, options: BatchOptions) -> int:
    requests = list(_requests(path, options))
    done = _finished_ids(options.out)
    todo = [r for r in requests if r.custom_id not in done]
    print(f"{len(requests)} requests, {len(requests) - len(todo)} already in {options.out}", file=sys.stderr)
    bar = _Bar(len(requests), len(requests) - len(todo))
    with httpx.Client(base_url=options.base_url, headers=options.headers, timeout=60) as client:
        try:
            resumed = _resume(client, options, bar)
            todo = [r for r in todo if r.custom_id not in resumed]
            for chunk in _chunks(todo, options.chunk):
                _run_chunk(client, chunk, options, bar)
        except _Interrupted as stopped:
            print("\ninterrupted: run the same command again to go on", file=sys.stderr)
            return 128 + stopped.signum
        except httpx.HTTPError as exc:
            print(f"\nthe service did not answer as expected: {exc}", file=sys.stderr)
            return 1
    bar.finish()
    return 0 if bar.failed == 0 else 2


# --- what to send ---------------------------------------------------------------------------------


def _requests(path: Path, options: BatchOptions) -> Iterator[Request]:
    if path.is_file():
        yield from _own_lines(path)
        return
    files = sorted(p for p in path.rglob("*") if p.is_file())
    others = [f for f in files if f.suffix.lower() not in IMAGE_SUFFIXES | AUDIO_FORMATS.keys()]
    if others:
        print(f"skipping {len(others)} files that are neither pictures nor wav/mp3 recordings", file=sys.stderr)
    for file in files:
        name = file.relative_to(path).as_posix()
        suffix = file.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            mime = mimetypes.guess_type(file.name)[0] or "image/png"
            url = f"data:{mime};base64,{base64.b64encode(file.read_bytes()).decode()}"
            parts: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": url}}]
            yield Request(name, _chat_line(name, parts, options.image_prompt, options), "image")
        elif suffix in AUDIO_FORMATS:
            audio = {"data": base64.b64encode(file.read_bytes()).decode(), "format": AUDIO_FORMATS[suffix]}
            parts = [{"type": "input_audio", "input_audio": audio}]
            yield Request(name, _chat_line(name, parts, options.audio_prompt, options), "audio")


def _chat_line(custom_id: str, parts: list[dict[str, Any]], prompt: str, options: BatchOptions) -> str:
    content = [*parts, {"type": "text", "text": prompt}] if prompt else parts
    body = {
        "model": options.model,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": options.max_tokens,
        "temperature": options.temperature,
    }
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body})


def _own_lines(path: Path) -> Iterator[Request]:
    for n, text in enumerate(path.read_text().splitlines(), 1):
        if not text.strip():
            continue
        try:
            custom_id = str(json.loads(text)["custom_id"])
        except (json.JSONDecodeError, KeyError, TypeError):
            custom_id = f"line-{n}"  # the service reports what is wrong with it
        yield Request(custom_id, text, "request")


def _chunks(requests: list[Request], size: int) -> Iterator[list[Request]]:
    chunk: list[Request] = []
    weight = 0
    for request in requests:
        if chunk and (len(chunk) >= size or weight + len(request.line) > _MAX_CHUNK_BYTES):
            yield chunk
            chunk, weight = [], 0
        chunk.append(request)
        weight += len(request.line)
    if chunk:
        yield chunk


# --- running batches ------------------------------------------------------------------------------


def _state_file(options: BatchOptions) -> Path:
    return options.out.with_name(options.out.name + ".batch")


def _resume(client: httpx.Client, options: BatchOptions, bar: _Bar) -> set[str]:
    """Follow the batch an interrupted run left in flight; the custom ids it covers."""
    state = _state_file(options)
    if not state.exists():
        return set()
    saved = json.loads(state.read_text())
    reply = client.get(f"/v1/batches/{saved['batch_id']}")
    if reply.status_code == 404:
        state.unlink()
        return set()
    reply.raise_for_status()
    print(f"following batch {saved['batch_id']} from the interrupted run", file=sys.stderr)
    _follow(client, saved["batch_id"], saved["kinds"], options, bar)
    return set(saved["kinds"])


def _run_chunk(client: httpx.Client, chunk: list[Request], options: BatchOptions, bar: _Bar) -> None:
    data = ("\n".join(r.line for r in chunk) + "\n").encode()
    upload = client.post("/v1/files", files={"file": ("batch.jsonl", data)}, data={"purpose": "batch"})
    upload.raise_for_status()
    endpoint = _endpoint(chunk)
    created = client.post(
        "/v1/batches", json={"input_file_id": upload.json()["id"], "endpoint": endpoint, "completion_window": "24h"}
    )
    created.raise_for_status()
    batch_id = created.json()["id"]
    kinds = {r.custom_id: r.kind for r in chunk}
    _state_file(options).write_text(json.dumps({"batch_id": batch_id, "kinds": kinds}))
    _follow(client, batch_id, kinds, options, bar)
    client.delete(f"/v1/files/{upload.json()['id']}")


def _endpoint(chunk: list[Request]) -> str:
    """The batch's endpoint: the url of the first readable line (bad lines are the service's to report)."""
    for request in chunk:
        if request.kind != "request":
            break
        try:
            url = json.loads(request.line).get("url")
        except (json.JSONDecodeError, AttributeError):
            continue
        if isinstance(url, str):
            return url
    return "/v1/chat/completions"


def _follow(client: httpx.Client, batch_id: str, kinds: dict[str, str], options: BatchOptions, bar: _Bar) -> None:
    """Poll a batch to its end, then append its results and forget it."""
    base = bar.done
    while True:
        reply = client.get(f"/v1/batches/{batch_id}")
        reply.raise_for_status()
        batch = reply.json()
        counts = batch["request_counts"]
        bar.show(base + counts["completed"] + counts["failed"], batch["status"])
        if batch["status"] in _ENDS:
            break
        time.sleep(options.poll_s)
    lines: list[dict[str, Any]] = []
    for key in ("output_file_id", "error_file_id"):
        if file_id := batch.get(key):
            content = client.get(f"/v1/files/{file_id}/content")
            content.raise_for_status()
            lines += [json.loads(t) for t in content.text.splitlines() if t.strip()]
    # A line the service could not read has no custom_id; it is known by its place in the chunk.
    order = list(kinds)
    for line in lines:
        if line.get("custom_id") is None and str(line.get("id", "")).rsplit("_", 1)[-1].isdigit():
            index = int(str(line["id"]).rsplit("_", 1)[-1])
            line["custom_id"] = order[index] if index < len(order) else None
    already = _finished_ids(options.out)  # written by a run stopped just before it forgot the batch
    results = [_result(line, kinds) for line in lines if line.get("custom_id") in kinds]
    if batch["status"] == "failed":
        errors = "; ".join(e["message"] for e in (batch.get("errors") or {}).get("data", []))
        results = [{"file": c, "kind": k, "error": f"the batch failed: {errors}"} for c, k in kinds.items()]
    results = [r for r in results if str(r.get("file") or r.get("custom_id")) not in already]
    with options.out.open("a") as out:
        for result in results:
            out.write(json.dumps(result) + "\n")
    bar.failed += sum(1 for r in results if r.get("error"))
    bar.done = base + len(kinds)
    _state_file(options).unlink(missing_ok=True)
    for file_id in (batch.get("output_file_id"), batch.get("error_file_id")):
        if file_id:
            client.delete(f"/v1/files/{file_id}")


def _result(line: dict[str, Any], kinds: dict[str, str]) -> dict[str, Any]:
    custom_id = line["custom_id"]
    kind = kinds[custom_id]
    if kind == "request":
        return line  # the user's own requests: the output line as the service wrote it
    result: dict[str, Any] = {"file": custom_id, "kind": kind, "tags": None, "transcript": None, "answer": None}
    response = line.get("response") or {}
    body = response.get("body") or {}
    if response.get("status_code") != 200:
        error = body.get("error") or line.get("error") or {}
        result["error"] = error.get("message", "failed")
        return result
    for media in body.get("input_media", []):
        if media["type"] == "image":
            result["tags"] = media.get("description")
        else:
            result["transcript"] = media.get("transcript")
    result["answer"] = body["choices"][0]["message"]["content"]
    result["error"] = None
    return result


def _finished_ids(out: Path) -> set[str]:
    if not out.exists():
        return set()
    ids = set()
    for text in out.read_text().splitlines():
        try:
            line = json.loads(text)
        except json.JSONDecodeError:
            continue  # a line cut short by an interruption: that file runs again
        ids.add(str(line.get("file") or line.get("custom_id")))
    return ids


class _Bar:
    """A one-line progress bar on stderr."""

    def __init__(self, total: int, done: int) -> None:
        self.total = total
        self.done = done
        self.failed = 0
        self._first = done
        self._started = time.monotonic()

    def show(self, done: int, status: str) -> None:
        width = 30
        filled = width * done // max(1, self.total)
        rate = (done - self._first) / max(1e-6, time.monotonic() - self._started)
        line = f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total}  {status:<11} {rate:.1f}/s"
        print(line, end="", file=sys.stderr, flush=True)

    def finish(self) -> None:
        self.show(self.done, "done")
        print(f"\n{self.done} results, {self.failed} with errors", file=sys.stderr)
