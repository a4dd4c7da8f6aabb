"""The run-time CPU dispatch build against a build for exactly this CPU, in one run.

    python -m bench.cpu_variants [--native-wheel W] [--rounds 3] [--tokens 64] [--prompt-tokens 256]

The installed llama-cpp-python (scripts/install.sh: every CPU variant, the best loaded at run
time) and a wheel built with `-DGGML_NATIVE=ON` on this machine (built here once, into
~/.cache/mmstream/wheels/native-*, unless --native-wheel names one) each run the decoder's
self-test on the bundled model in their own process, alternately, `--rounds` times. Prints
generation and prompt tokens/s (medians) and the ratios dispatch / native.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _native_wheel() -> Path:
    lock = (ROOT / "requirements/llama.lock").read_text()
    version = lock.split("llama-cpp-python==", 1)[1].split()[0]
    cache = Path.home() / ".cache/mmstream/wheels" / f"native-{version}"
    found = sorted(cache.glob("llama_cpp_python-*.whl"))
    if found:
        return found[0]
    print(f"building llama-cpp-python {version} with -DGGML_NATIVE=ON (once)...", file=sys.stderr)
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-cache-dir", "--require-hashes"]
        + ["--no-binary", "llama-cpp-python", "-w", str(cache), "-r", str(ROOT / "requirements/llama.lock")],
        env={**os.environ, "CMAKE_ARGS": "-DGGML_NATIVE=ON"},
        check=True,
    )
    return sorted(cache.glob("llama_cpp_python-*.whl"))[0]


def _run(site: Path | None, args: argparse.Namespace) -> dict[str, object]:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": str(args.threads)}
    if site is not None:  # this llama_cpp first on the path
        env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT)])
    command = [sys.executable, "-m", "workers.decoder.selftest", "--tokens", str(args.tokens)]
    command += ["--prompt-tokens", str(args.prompt_tokens), "--threads", str(args.threads)]
    out = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    report: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--native-wheel", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    wheel = args.native_wheel or _native_wheel()
    with tempfile.TemporaryDirectory(prefix="mmstream-native-") as tmp:
        with zipfile.ZipFile(wheel) as z:
            z.extractall(tmp)
        for lib in Path(tmp, "llama_cpp", "lib").glob("*.so*"):
            lib.chmod(0o755)
        runs: dict[str, list[dict[str, object]]] = {"dispatch": [], "native": []}
        for _ in range(args.rounds):
            runs["dispatch"].append(_run(None, args))
            runs["native"].append(_run(Path(tmp), args))

    def median(build: str, key: str) -> float:
        return statistics.median(float(str(r[key])) for r in runs[build])

    variant = runs["dispatch"][0]["cpu_variant"]
    print(f"model {runs['dispatch'][0]['model']}, {args.threads} threads, {args.rounds} rounds, medians")
    print(f"{'build':28}{'generate tok/s':>16}{'prompt tok/s':>14}")
    for build, label in (("dispatch", f"dispatch (loaded {variant})"), ("native", "native (-DGGML_NATIVE=ON)")):
        print(f"{label:28}{median(build, 'tokens_per_s'):>16.1f}{median(build, 'prompt_tokens_per_s'):>14.1f}")
    gen = median("dispatch", "tokens_per_s") / median("native", "tokens_per_s")
    prompt = median("dispatch", "prompt_tokens_per_s") / median("native", "prompt_tokens_per_s")
    print(f"{'ratio dispatch / native':28}{gen:>15.2f}x{prompt:>13.2f}x")


if __name__ == "__main__":
    main()
