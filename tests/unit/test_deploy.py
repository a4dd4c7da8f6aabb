"""docker-compose.yml and the Dockerfiles, checked without a Docker engine.

The compose file must validate against the Compose Specification's JSON schema (tests/data/
compose-spec.json, from docker/compose 1.29.2, Apache-2.0), every service that runs mmstream must
run a real `mmstream` command, and the images must install the way the README does.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from cli.main import _parser

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


def _validator() -> jsonschema.protocols.Validator:
    schema = json.loads((ROOT / "tests/data/compose-spec.json").read_text())
    return jsonschema.Draft201909Validator(schema)


def test_compose_file_follows_the_compose_specification():
    errors = [f"{list(e.path)}: {e.message}" for e in _validator().iter_errors(_compose())]
    assert not errors, errors


def test_the_schema_check_catches_mistakes():
    broken = _compose()
    broken["services"]["gateway"]["ports"] = "8000"  # must be a list
    broken["services"]["redis"]["restart_policy"] = "always"  # not a service field
    assert len(list(_validator().iter_errors(broken))) >= 2


def test_every_kind_has_a_service_and_redis_is_set_up_for_celery():
    services = _compose()["services"]
    commands = {name: s.get("command", []) for name, s in services.items()}
    for kind in ("decode", "audio", "image"):
        assert any(c[:3] == ["mmstream", "worker", kind] for c in commands.values()), kind
    assert ["mmstream", "gateway"] in commands.values()
    redis = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis and "--maxmemory-policy noeviction" in redis
    gpu = services["decoder-worker-gpu"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert gpu["build"]["args"]["LLAMA_BUILD"] == "cuda"
    assert "flower" in services
    for name, service in services.items():
        assert "healthcheck" in service or name == "flower", name


@pytest.mark.parametrize("name", ["gateway", "decoder-worker", "decoder-worker-gpu", "audio-worker", "image-worker"])
def test_service_commands_are_real_mmstream_commands(name: str):
    command = _compose()["services"][name]["command"]
    assert command[0] == "mmstream"
    _parser().parse_args(command[1:])  # exits (fails the test) on an unknown command or option


def test_no_secrets_in_the_compose_file():
    text = (ROOT / "docker-compose.yml").read_text().lower()
    assert not re.search(r"(password|secret|api_key|token)\s*[:=]\s*\S", text)
    # The gateway's keys come from the operator's environment, and it will not start without them.
    keys = _compose()["services"]["gateway"]["environment"]["MMSTREAM_API_KEYS"]
    assert keys.startswith("${MMSTREAM_API_KEYS:?")


@pytest.mark.parametrize("dockerfile", ["docker/Dockerfile", "docker/Dockerfile.cuda"])
def test_images_install_as_the_readme_does(dockerfile: str):
    # The README's `make run` installs with scripts/install.sh; the images run the same script.
    makefile = (ROOT / "Makefile").read_text()
    assert "scripts/install.sh" in makefile and "make run" in (ROOT / "README.md").read_text()
    text = (ROOT / dockerfile).read_text()
    runs = [
        shlex.split(line.removeprefix("RUN "), posix=True) for line in _instructions(text) if line.startswith("RUN ")
    ]
    assert any("scripts/install.sh" in part for run in runs for part in run), runs
    copies = [line.split()[1:-1] for line in _instructions(text) if line.startswith("COPY ")]
    copied = {part for parts in copies for part in parts if not part.startswith("--")}
    for package in ("shared", "gateway", "workers", "training", "cli", "scripts", "requirements", "pyproject.toml"):
        assert package in copied, (dockerfile, package)


def test_the_cuda_image_builds_llama_cpp_with_cuda_or_for_the_cpu():
    text = (ROOT / "docker/Dockerfile.cuda").read_text()
    assert "ARG LLAMA_BUILD=cuda" in text and "-DGGML_CUDA=on" in text


def _instructions(text: str) -> list[str]:
    """Dockerfile instructions with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]
