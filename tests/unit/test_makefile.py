"""The Makefile installs again when what the install depends on changes: locks, the script, or the
llama.cpp build flags (a new flag must rebuild, never keep the old library). Run on a copy of the
Makefile whose install script only records that it ran."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _project(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "requirements").mkdir()
    for name in ("runtime.lock", "dev.lock", "llama.lock", "smart-turn.lock"):
        (tmp_path / "requirements" / name).write_text("")
    (tmp_path / "pyproject.toml").write_text("")
    script = tmp_path / "scripts" / "install.sh"
    script.parent.mkdir()
    script.write_text('#!/bin/sh\nmkdir -p .venv\necho "$MMSTREAM_LLAMA_CMAKE_ARGS" >> installs\n')
    script.chmod(0o755)
    return tmp_path


def _install(project: Path, flags: str | None = None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "MMSTREAM_LLAMA_CMAKE_ARGS"}
    if flags is not None:
        env["MMSTREAM_LLAMA_CMAKE_ARGS"] = flags
    subprocess.run(["make", "-s", "install"], cwd=project, env=env, check=True, capture_output=True)
    installs = project / "installs"
    return installs.read_text().splitlines() if installs.exists() else []


def test_new_llama_build_flags_install_again_and_the_same_ones_do_not(tmp_path: Path):
    project = _project(tmp_path)
    assert _install(project) == [""]
    assert _install(project) == [""]  # nothing changed: nothing to do
    assert _install(project, "-DGGML_CUDA=on") == ["", "-DGGML_CUDA=on"]
    assert _install(project, "-DGGML_CUDA=on") == ["", "-DGGML_CUDA=on"]
    assert _install(project) == ["", "-DGGML_CUDA=on", ""]  # back to the defaults: again


def test_a_changed_lock_installs_again(tmp_path: Path):
    project = _project(tmp_path)
    _install(project)
    lock = project / "requirements" / "llama.lock"
    lock.write_text("llama-cpp-python==9.9.9\n")
    os.utime(lock, (lock.stat().st_atime + 5, lock.stat().st_mtime + 5))
    assert len(_install(project)) == 2
