"""`mmstream up`: the whole service on one machine, under one supervisor.

Starts a Redis-compatible server if none answers at the configured URL, one worker process per
kind and the gateway, each in its own process group. A worker that dies is restarted (a few times
a minute at most); Ctrl-C or SIGTERM stops every child cleanly, then anything left is killed.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from types import FrameType

import redis

from cli.redis_server import local_port, reachable, start_server
from shared.config import WORKER_KINDS, Settings, WorkerKind
from shared.exits import describe_exit, worth_restarting
from shared.keys import Keys
from workers.presence import record_failure, worker_name

log = logging.getLogger("mmstream.up")

_STOP_GRACE_S = 15.0
_MAX_RESTARTS_PER_MIN = 5


@dataclass
class _Child:
    name: str
    args: list[str]
    kind: WorkerKind | None = None  # a worker's kind; None for the gateway
    proc: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # this child's own settings

    def start(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(self.args, env={**env, **self.env}, start_new_session=True)
        log.info("started %s (pid %d)", self.name, self.proc.pid)


def up(settings: Settings) -> int:
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    redis_proc = None
    if not reachable(settings.redis_url):
        port = local_port(settings.redis_url)
        if port is None:
            log.error("Redis at %s does not answer and is not on this machine", settings.redis_url)
            return 1
        log.info("no Redis at %s; starting one", settings.redis_url)
        redis_proc = start_server(port, data_dir=settings.redis_data_dir / str(port))

    env = {
        **os.environ,
        "MMSTREAM_HOST": settings.host,
        "MMSTREAM_PORT": str(settings.port),
        "MMSTREAM_REDIS_URL": settings.redis_url,
        "PYTHONUNBUFFERED": "1",
    }
    cmd = [sys.executable, "-m", "cli.main"]
    workers = [_Child(f"{kind} worker", [*cmd, "worker", kind], kind) for kind in WORKER_KINDS]
    if settings.metrics_port:  # one port each: the given one and the next ones
        for n, child in enumerate(workers):
            child.env["MMSTREAM_METRICS_PORT"] = str(settings.metrics_port + n)
    gateway = _Child("gateway", [*cmd, "gateway"])
    children = [*workers, gateway]
    for child in children:
        child.start(env)
    threading.Thread(target=_announce, args=(settings, stop), daemon=True).start()

    code = 0
    try:
        while not stop.wait(0.5):
            if gateway.proc is not None and gateway.proc.poll() is not None:
                log.error("the gateway exited with %s; stopping", gateway.proc.returncode)
                code = 1
                break
            for child in workers:
                if child.proc is not None and child.proc.poll() is not None and not _restart(child, env, settings):
                    code = 1
                    stop.set()
    finally:
        _stop_all(children)
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(timeout=_STOP_GRACE_S)
    log.info("stopped")
    return code


def _restart(child: _Child, env: dict[str, str], settings: Settings) -> bool:
    """Start a worker that exited again, unless that would only repeat its end; False: give up."""
    assert child.proc is not None and child.kind is not None
    code, why = child.proc.returncode, describe_exit(child.proc.returncode)
    if code < 0:  # died of a signal: it could not say so itself, so /readyz hears it from here
        _record(settings, child.kind, worker_name(child.kind, child.proc.pid), f"the process {why}")
    if not worth_restarting(code):
        log.error("%s %s; not restarting it", child.name, why)
        return False
    now = time.monotonic()
    child.restarts = [t for t in child.restarts if now - t < 60] + [now]
    if len(child.restarts) > _MAX_RESTARTS_PER_MIN:
        log.error("%s keeps exiting (last: it %s); giving up", child.name, why)
        return False
    log.warning("%s %s; restarting it", child.name, why)
    child.start(env)
    return True


def _record(settings: Settings, kind: WorkerKind, name: str, reason: str) -> None:
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=2)
    try:
        record_failure(client, Keys(settings.key_prefix), kind, name, reason)
    finally:
        client.close()


def _stop_all(children: list[_Child]) -> None:
    running = [c for c in children if c.proc is not None and c.proc.poll() is None]
    for child in running:
        assert child.proc is not None
        child.proc.terminate()
    deadline = time.monotonic() + _STOP_GRACE_S
    for child in running:
        assert child.proc is not None
        try:
            child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in time; killing it", child.name)
            os.killpg(child.proc.pid, signal.SIGKILL)
            child.proc.wait()


def _announce(settings: Settings, stop: threading.Event) -> None:
    """Tell the person at the terminal when the service is ready, and where."""
    base = f"http://{settings.host}:{settings.port}"
    while not stop.wait(1.0):
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=2) as reply:  # noqa: S310 - local URL
                if reply.status == 200:
                    log.info("ready: ws://%s:%d/v1/realtime  (try: mmstream chat)", settings.host, settings.port)
                    return
        except OSError:
            continue
