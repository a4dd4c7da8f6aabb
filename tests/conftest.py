"""Shared fixtures: one private redis-server per test run, and the default stack on top of it."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.redis_server import start_server
from shared.config import SMALL_DECODER_MODEL
from tests.helpers import OwnRedis, Stack, emptied, free_port, running_stack

# Tests that check plumbing run the small model, in this process and every stack it starts (they copy the
# environment); a test of the default model says so (tests/e2e/test_default_model.py).
os.environ.setdefault("MMSTREAM_DECODER_MODEL", SMALL_DECODER_MODEL)

_databases = itertools.cycle(range(1, 14))


@pytest.fixture(scope="session")
def redis_base() -> Iterator[str]:
    port = free_port()
    proc = start_server(port)
    yield f"redis://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def fresh_redis_url(redis_base: str) -> str:
    """An empty Redis database no running stack uses, so that workers never take each other's tasks.

    Database 0 is the shared `stack`'s, 14 and 15 belong to the HTTP fuzz and hostile-input modules;
    1-13 are handed out in turn and emptied first (tests run one at a time).
    """
    return emptied(f"{redis_base}/{next(_databases)}")


@pytest.fixture(scope="session")
def stack(redis_base: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One worker of each kind and the gateway, shared by the end-to-end tests."""
    log_dir: Path = tmp_path_factory.mktemp("stack")
    with running_stack(f"{redis_base}/0", log_dir, decoders=1, speech=1) as s:
        yield s


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    """A private Redis of its own (with an append-only file) that a test may stop and start again."""
    server = OwnRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()
