"""llama.cpp's own `llama-server` and `llama-batched-bench`, built from the pinned sdist, as baselines.

They are built from the llama.cpp vendored in the llama-cpp-python sdist that requirements/llama.lock
pins (downloaded by pip, hash-checked), once, into ~/.cache/mmstream/llama-server-<hash>. Only the
libraries and the two tools are compiled (a few minutes): the CPU code is not built again. The
`libggml-cpu-<variant>.so` the decoder itself loads on this machine is linked beside the binaries,
so both sides run the same CPU code, chosen the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements/llama.lock"

# No CPU backend here (it comes from the installed package), no web UI, no network client.
_CMAKE_ARGS = [
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_NATIVE=OFF",
    "-DGGML_BACKEND_DL=ON",
    "-DGGML_CPU=OFF",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
]
_TARGETS = ["llama-server", "llama-batched-bench"]


def build_dir() -> Path:
    key = hashlib.sha256((LOCK.read_text() + " ".join(_CMAKE_ARGS)).encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "mmstream" / f"llama-server-{key}"


def ensure_built() -> Path:
    """The directory holding llama-server and llama-batched-bench, built on first use."""
    out = build_dir()
    bin_dir = out / "build" / "bin"
    if all((bin_dir / t).exists() for t in _TARGETS):
        return bin_dir
    print(f"building llama-server from the pinned llama.cpp (once) in {out}...", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"]
            + ["--require-hashes", "-r", str(LOCK), "-d", tmp],
            check=True,
        )
        (sdist,) = Path(tmp).glob("llama_cpp_python-*.tar.gz")
        with tarfile.open(sdist) as archive:
            archive.extractall(tmp, filter="data")
        (vendored,) = Path(tmp).glob("llama_cpp_python-*/vendor/llama.cpp")
        src = out / "llama.cpp"
        shutil.rmtree(src, ignore_errors=True)
        shutil.move(str(vendored), src)
    jobs = str(os.cpu_count() or 2)
    subprocess.run(["cmake", "-S", str(src), "-B", str(out / "build"), "-G", "Ninja", *_CMAKE_ARGS], check=True)
    subprocess.run(["cmake", "--build", str(out / "build"), "-j", jobs, "--target", *_TARGETS], check=True)
    return bin_dir


def link_cpu_backend(bin_dir: Path, variant: str) -> Path:
    """Put the decoder's CPU variant (only that one) beside the binaries, where ggml looks first."""
    from workers.decoder.llama import LIB_DIR

    for old in bin_dir.glob("libggml-cpu-*.so"):
        old.unlink()
    lib = LIB_DIR / f"libggml-cpu-{variant}.so"
    if not lib.exists():
        raise FileNotFoundError(f"{lib} is not installed")
    (bin_dir / lib.name).symlink_to(lib)
    return lib


def decoder_cpu_variant(model: Path) -> str:
    """The CPU variant a decoder worker would load here: the one its self-test probe passes."""
    command = [sys.executable, "-m", "workers.decoder.selftest", "--probe", "--model", str(model), "--tokens", "1"]
    out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
    return str(json.loads(out.stdout.strip().splitlines()[-1])["cpu_variant"])


@dataclass
class LlamaServer:
    base: str
    proc: subprocess.Popen[bytes]
    log: Path


@contextlib.contextmanager
def llama_server(
    bin_dir: Path, model: Path, *, parallel: int, n_ctx_per_seq: int, threads: int, port: int, extra: list[str]
) -> Iterator[LlamaServer]:
    log = Path(tempfile.mkdtemp(prefix="mmstream-bench-")) / "llama-server.log"
    cmd = [str(bin_dir / "llama-server"), "-m", str(model), "-np", str(parallel), "-c", str(n_ctx_per_seq * parallel)]
    cmd += ["-t", str(threads), "-tb", str(threads), "--port", str(port), "--host", "127.0.0.1", *extra]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": str(threads)}
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=out, env=env, cwd=bin_dir)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama-server exited with {proc.returncode}; see {log}")
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as r:  # noqa: S310
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"llama-server did not start; see {log}")
            time.sleep(0.5)
        yield LlamaServer(base, proc, log)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def batched_bench(bin_dir: Path, model: Path, *, threads: int, parallel: list[int], prompt: int, gen: int) -> str:
    """llama-batched-bench's table: the engine's own tokens/s at each number of sequences."""
    cmd = [str(bin_dir / "llama-batched-bench"), "-m", str(model), "-t", str(threads), "-tb", str(threads)]
    cmd += ["-c", str((prompt + gen) * max(parallel) + 64), "-npp", str(prompt), "-ntg", str(gen)]
    cmd += ["-npl", ",".join(map(str, parallel))]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=bin_dir, check=True)
    return out.stdout


if __name__ == "__main__":
    print(ensure_built())
