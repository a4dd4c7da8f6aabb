"""Proves that the installed llama.cpp runs on this CPU: load its backends and a GGUF, generate a few tokens.

    python -m workers.decoder.selftest [--model SPEC] [--tokens N] [--cpu-variant V]

Prints one JSON line (the CPU variant loaded, its features, the text, the speed) and exits 0.
scripts/install.sh runs it after every install, the decoder worker runs it in a child process
before loading its model (a library that dies of SIGILL then takes only the child with it), and
the emulated-CPU tests run it under qemu.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from shared.config import DEFAULT_DECODER_MODEL, Settings
from shared.errors import ModelError
from shared.exits import describe_exit
from shared.models import resolve_model

if TYPE_CHECKING:
    from workers.decoder.llama import LlamaModel

PROMPT = "The capital of France is"


def main(argv: list[str] | None = None) -> int:
    settings = Settings()
    parser = argparse.ArgumentParser(prog="python -m workers.decoder.selftest", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=DEFAULT_DECODER_MODEL, help="a GGUF path or bundled:<name>")
    parser.add_argument("--tokens", type=int, default=4, help="tokens to generate")
    parser.add_argument("--prompt-tokens", type=int, default=0, help="also time reading a prompt this long")
    parser.add_argument("--threads", type=int, default=settings.decoder_threads)
    parser.add_argument(
        "--cpu-variant", default=settings.decoder_cpu_variant, help="a libggml-cpu variant to load instead of the best"
    )
    args = parser.parse_args(argv)

    from workers.decoder.backends import BackendError
    from workers.decoder.llama import ContextConfig, LlamaModel

    try:
        given = Path(args.model)  # a file as it is (the worker checked it); a setting resolved and verified
        path = given if given.is_file() else resolve_model(args.model, settings.models_dir).path
        started = time.monotonic()
        n_ctx = max(256, args.prompt_tokens + args.tokens + 64)
        config = ContextConfig(
            n_ctx_per_seq=n_ctx,
            n_seq=1,
            n_batch=256,
            n_threads=args.threads,
            n_gpu_layers=0,
            cpu_variant=args.cpu_variant,
        )
        model = LlamaModel(path, config)
    except (BackendError, ModelError, RuntimeError) as exc:
        print(f"selftest: {exc}", file=sys.stderr)
        return 2
    loaded = time.monotonic()
    prompt_speed = _time_prompt(model, args.prompt_tokens) if args.prompt_tokens else None
    tokens = model.tokenize(PROMPT, add_special=True)
    model.decode([(t, i, 0, i == len(tokens) - 1) for i, t in enumerate(tokens)])
    sampler = model.new_sampler(0.0, 1.0, 0)
    out: list[int] = []
    first = time.monotonic()
    for _ in range(args.tokens):
        token = sampler.sample(-1)
        out.append(token)
        if model.is_eog(token):
            break
        model.decode([(token, len(tokens) + len(out) - 1, 0, True)])
    done = time.monotonic()
    report = {
        "cpu_variant": model.backends.cpu_variant,
        "cpu_features": list(model.backends.cpu_features),
        "devices": list(model.backends.devices),
        "model": path.name,
        "text": b"".join(model.piece(t) for t in out).decode("utf-8", "replace"),
        "tokens": len(out),
        "load_s": round(loaded - started, 3),
        "tokens_per_s": round(len(out) / max(done - first, 1e-9), 2),
        "prompt_tokens_per_s": prompt_speed,
    }
    sampler.close()
    model.close()
    print(json.dumps(report))
    return 0


def _time_prompt(model: LlamaModel, n: int) -> float:
    """Prompt tokens read per second over `n` tokens (in batches of 256), leaving the cache empty."""
    words = model.tokenize(" ".join(["The quick brown fox jumps over the lazy dog."] * (n // 8 + 1)))[:n]
    started = time.monotonic()
    for at in range(0, n, 256):
        chunk = words[at : at + 256]
        model.decode([(t, at + i, 0, at + i == n - 1) for i, t in enumerate(chunk)])
    elapsed = time.monotonic() - started
    model.forget(0)
    return round(n / max(elapsed, 1e-9), 2)


def check_in_child(
    model: Path, *, threads: int, cpu_variant: str = "auto", timeout_s: float = 300.0, argv: list[str] | None = None
) -> dict[str, object]:
    """Run the self-test on `model` (one token) in a child process; its report, or ModelError saying why not.

    `argv` replaces the command (tests make a child that dies of a signal).
    """
    command = argv or [
        sys.executable, "-m", "workers.decoder.selftest", "--model", str(model), "--tokens", "1",
        "--threads", str(threads), "--cpu-variant", cpu_variant,
    ]  # fmt: skip
    try:
        child = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ModelError(f"llama.cpp's self-test on {model.name} did not finish in {timeout_s:.0f} s") from exc
    if child.returncode != 0:
        # Its own last line says why it gave up; a signal leaves none.
        said = child.stderr.strip().splitlines()[-1:] if child.returncode > 0 else []
        detail = f": {said[0]}" if said else ""
        raise ModelError(f"llama.cpp's self-test on {model.name} {describe_exit(child.returncode)}{detail}")
    report: dict[str, object] = json.loads(child.stdout.strip().splitlines()[-1])
    return report


if __name__ == "__main__":
    sys.exit(main())
