"""The service as a user starts it: readiness, `mmstream up`, `mmstream chat`, clean shutdown."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import redis

from cli.redis_server import reachable
from shared.exits import EXIT_CANNOT_LOAD
from tests.helpers import ROOT, free_port, http_status, make_stack, wait_for

HEAVY = ("torch", "faster_whisper", "open_clip", "llama_cpp", "ctranslate2")


def test_gateway_and_shared_never_import_model_libraries():
    code = (
        "import sys, gateway.app, gateway.realtime.connection, shared.clients, shared.models, cli.main, "
        f"cli.up, cli.chat; print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _readyz(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_readyz_names_what_is_missing(fresh_redis_url, tmp_path):
    stack = make_stack(fresh_redis_url, tmp_path)
    try:
        stack.start_gateway()
        status, body = _readyz(f"{stack.http}/readyz")
        assert status == 503 and any("decode" in r for r in body["reasons"])
        assert http_status(f"{stack.http}/healthz") == 200
    finally:
        stack.close()
    dead = make_stack(f"redis://127.0.0.1:{free_port()}/0", tmp_path / "dead")
    try:
        dead.start_gateway()
        status, body = _readyz(f"{dead.http}/readyz")
        assert status == 503 and body["reasons"] == ["redis is unreachable"]
    finally:
        dead.close()


def _children_of_port(port: int) -> list[int]:
    """Processes whose environment names this gateway port (the service's own children)."""
    pids = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if f"MMSTREAM_PORT={port}".encode() in environ.read_bytes().split(b"\0"):
                pids.append(int(environ.parent.name))
        except OSError:
            continue
    return pids


def test_up_starts_everything_chat_works_and_ctrl_c_stops_it(tmp_path):
    port, redis_port = free_port(), free_port()
    env = {
        **os.environ,
        "MMSTREAM_PORT": str(port),
        "MMSTREAM_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "MMSTREAM_REDIS_DATA_DIR": str(tmp_path / "redis"),
        "MMSTREAM_DECODER_N_CTX": "2048",
        "PYTHONUNBUFFERED": "1",
    }
    log = (tmp_path / "up.log").open("wb")
    up = subprocess.Popen([sys.executable, "-m", "cli.main", "up"], cwd=ROOT, env=env, stdout=log, stderr=log)
    try:
        wait_for(lambda: http_status(f"http://127.0.0.1:{port}/readyz") == 200, 120, "mmstream up to be ready")
        assert reachable(f"redis://127.0.0.1:{redis_port}/0"), "up started its own Redis"
        _, ready = _readyz(f"http://127.0.0.1:{port}/readyz")
        (decoder,) = ready["workers"]["decode"]
        assert decoder["cpu_backend"] and "CPU" in decoder["devices"]  # which llama.cpp CPU code it loaded
        chat = subprocess.run(
            [
                sys.executable,
                "-m",
                "cli.main",
                "chat",
                "--temperature",
                "0",
                "--once",
                "What is the capital of France? Answer in one sentence.",
            ],
            cwd=ROOT,
            env=env,
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert chat.returncode == 0, chat.stderr
        assert "Paris" in chat.stdout
        children = _children_of_port(port)
        assert len(children) >= 4  # a worker of each kind and the gateway
        started = time.monotonic()
        up.send_signal(signal.SIGINT)  # what Ctrl-C does
        assert up.wait(30) == 0
        assert time.monotonic() - started < 30
        wait_for(
            lambda: (
                not [
                    p
                    for p in children
                    if Path(f"/proc/{p}").exists() and "zombie" not in Path(f"/proc/{p}/status").read_text()
                ]
            ),
            5,
            "children to exit",
        )
        assert not reachable(f"redis://127.0.0.1:{redis_port}/0"), "the Redis it started is stopped too"
    finally:
        if up.poll() is None:
            up.kill()
        log.close()
        print((tmp_path / "up.log").read_text()[-3000:])


def test_a_decoder_that_cannot_load_its_model_says_why_and_stops(fresh_redis_url, tmp_path):
    stack = make_stack(fresh_redis_url, tmp_path, decoder_cpu_variant="pentium")
    try:
        stack.start_gateway()
        worker = stack.start_worker("decode", "decode-0")
        assert worker.wait(120) == EXIT_CANNOT_LOAD  # not a crash loop: `mmstream up` leaves it stopped
        status, body = _readyz(f"{stack.http}/readyz")
        assert status == 503
        (reason,) = [r for r in body["reasons"] if "decode" in r]
        assert "decode-0 could not load its model" in reason and "'pentium' is not installed" in reason
        assert "'pentium' is not installed" in (tmp_path / "decode-0.log").read_text()
    finally:
        stack.close()


def test_up_names_a_worker_killed_by_sigill_and_does_not_restart_it(fresh_redis_url, tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "MMSTREAM_PORT": str(port),
        "MMSTREAM_REDIS_URL": fresh_redis_url,
        "MMSTREAM_KEY_PREFIX": "mmtest",
        "MMSTREAM_DECODER_N_CTX": "2048",
        "PYTHONUNBUFFERED": "1",
    }
    log_path = tmp_path / "up.log"
    with log_path.open("wb") as log:
        up = subprocess.Popen([sys.executable, "-m", "cli.main", "up"], cwd=ROOT, env=env, stdout=log, stderr=log)
    try:
        wait_for(lambda: http_status(f"http://127.0.0.1:{port}/readyz") == 200, 120, "mmstream up to be ready")
        (decoder,) = [
            p for p in _children_of_port(port) if b"worker\0decode" in Path(f"/proc/{p}/cmdline").read_bytes()
        ]
        os.kill(decoder, signal.SIGILL)  # what a library built for another CPU does to it
        assert up.wait(60) == 1
        text = log_path.read_text()
        assert "Fatal Python error: Illegal instruction" in text  # the worker's own last words (faulthandler)
        assert "decode worker was killed by SIGILL (illegal instruction: the llama.cpp build uses" in text
        assert "not restarting it" in text and text.count("started decode worker") == 1
        failures = redis.Redis.from_url(fresh_redis_url).keys("mmtest:worker-failure:decode:*")
        (record,) = [json.loads(redis.Redis.from_url(fresh_redis_url).get(key) or b"{}") for key in failures]
        assert record["name"].endswith(f"-{decoder}") and "SIGILL" in record["reason"]  # what /readyz shows
    finally:
        if up.poll() is None:
            up.kill()
        print(log_path.read_text()[-3000:])
