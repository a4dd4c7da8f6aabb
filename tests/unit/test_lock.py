"""The hash-pinned lock files agree with pyproject.toml, and the install uses nothing else."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
REQS = ROOT / "requirements"


def _locked(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, sha256 hashes) for every entry of a pip requirements lock file."""
    text = re.sub(r"\\\n", " ", path.read_text())
    entries = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        spec, *options = line.split()
        name, version = spec.split("==")
        hashes = [o.removeprefix("--hash=sha256:") for o in options if o.startswith("--hash=sha256:")]
        entries[canonicalize_name(name.split("[")[0])] = (version, hashes)
    return entries


def _declared(extras: tuple[str, ...]) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [Requirement(r) for r in project["dependencies"]]
    for extra in extras:
        declared += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return [r for r in declared if r.name != "mmstream"]


def _check(lock: Path, extras: tuple[str, ...]) -> None:
    locked = _locked(lock)
    assert locked, lock
    for name, (_, hashes) in locked.items():
        assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), (lock.name, name)
    for req in _declared(extras):
        if req.marker is not None and not req.marker.evaluate({"platform_system": "Linux"}):
            continue
        name = canonicalize_name(req.name)
        if name == "llama-cpp-python":
            continue  # built from source: requirements/llama.lock
        assert name in locked, f"{req} is missing from {lock.name}: run `make lock`"
        assert req.specifier.contains(locked[name][0], prereleases=True), f"{lock.name}: {req} vs {locked[name][0]}"


def test_runtime_lock_covers_every_runtime_dependency_with_hashes():
    _check(REQS / "runtime.lock", ("decoder", "audio", "image"))


def test_dev_lock_covers_the_test_tools_too():
    _check(REQS / "dev.lock", ("decoder", "audio", "image", "dev", "bench"))


def test_llama_cpp_is_pinned_to_its_source_archive():
    (version, hashes), *_ = _locked(REQS / "llama.lock").values()
    declared = next(r for r in _declared(("decoder",)) if r.name == "llama-cpp-python")
    assert declared.specifier.contains(version) and len(hashes) == 1


def test_install_takes_packages_only_from_the_locks():
    script = (ROOT / "scripts/install.sh").read_text()
    installs = [
        line
        for line in script.splitlines()
        if not line.startswith("#") and re.search(r"pip\S*\s.*\b(install|wheel)\b", line)
    ]
    assert installs
    for line in installs:
        # Every pip install/wheel either checks hashes or installs only local, already-checked files.
        assert "--require-hashes" in line or "--no-deps" in line, line
