"""Proves that the installed llama.cpp runs on this CPU: load its backends and a GGUF, generate a few tokens.

    python -m workers.decoder.selftest [--model SPEC] [--tokens N] [--cpu-variant V] [--probe]

Prints one JSON line (the CPU variant loaded, its features, the text, the speed) and exits 0.
With `--probe` it runs itself in child processes instead: when the variant chosen dies (SIGILL:
code this CPU, or this VM, cannot run), the next best is tried, and the report says what was
passed over. scripts/install.sh probes after every install, the decoder worker probes before
loading its model (a library that dies then takes only a child with it) and loads the variant
that passed, and the emulated-CPU tests run it in-process under qemu.

The worker keeps each passing report (`PROVEN`), keyed by what could change the answer: the CPU's
flags, the model file, the variant asked for and the llama.cpp libraries. A restart on the same
machine, model and install then loads at once instead of after a child's whole test (2-4 s).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
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
_TRYING = "selftest: CPU variant "
# Where the decoder worker keeps passing reports (see the module's docstring).
PROVEN = Path.home() / ".cache" / "mmstream" / "selftest"


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
    parser.add_argument("--exclude-variant", action="append", default=[], help="pass this variant over (repeatable)")
    parser.add_argument("--probe", action="store_true", help="test in child processes, falling back on a crash")
    args = parser.parse_args(argv)

    from workers.decoder.backends import BackendError, pick_variant
    from workers.decoder.llama import LIB_DIR, ContextConfig, LlamaModel

    if args.probe:
        try:
            report = probe(Path(args.model), threads=args.threads, cpu_variant=args.cpu_variant, tokens=args.tokens)
        except ModelError as exc:
            print(f"selftest: {exc}", file=sys.stderr)
            return 1
        print(json.dumps(report))
        return 0
    try:
        variant = pick_variant(LIB_DIR, args.cpu_variant, args.exclude_variant)
        # Said before any of it runs: a child that dies leaves this line for `probe`.
        print(f"{_TRYING}{variant}", file=sys.stderr, flush=True)
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
            cpu_variant=variant,
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


def probe(
    model: Path,
    *,
    threads: int,
    cpu_variant: str = "auto",
    tokens: int = 1,
    argv: list[str] | None = None,
    cache: Path | None = None,
) -> dict[str, object]:
    """The self-test in a child, and on a crash in another with the next best variant (unless one is
    pinned): the first report that passes, with `passed_over` naming each variant that died and how.

    Raises ModelError when none passes. `argv` replaces the command (tests make children that die).
    With `cache`, a report that passed there before for the same key (`_proven_key`) is returned
    without a child, marked `"cached": true`, and a new pass is kept there.
    """
    entry = cache / f"{_proven_key(model, cpu_variant)}.json" if cache is not None else None
    if entry is not None:
        with contextlib.suppress(OSError, ValueError):
            kept: dict[str, object] = json.loads(entry.read_text())
            if isinstance(kept, dict) and "cpu_variant" in kept:  # else damaged: tested afresh
                return {**kept, "cached": True}
    report = _probe(model, threads=threads, cpu_variant=cpu_variant, tokens=tokens, argv=argv)
    if entry is not None:
        with contextlib.suppress(OSError):  # a cache: a worker that cannot write it still runs
            entry.parent.mkdir(parents=True, exist_ok=True)
            tmp = entry.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(report))
            tmp.replace(entry)  # whole or not at all, with several workers starting together
    return report


def _proven_key(model: Path, cpu_variant: str) -> str:
    """What a passing self-test depends on: the CPU's flags, the model file (by path, size and change
    time), the variant asked for, and the llama.cpp libraries installed (their names, sizes, times)."""
    from workers.decoder.backends import cpu_flags
    from workers.decoder.llama import LIB_DIR

    parts = [" ".join(sorted(cpu_flags())), cpu_variant]
    for path in (model.resolve(), *sorted(LIB_DIR.glob("*"))):
        stat = path.stat()
        parts.append(f"{path} {stat.st_size} {stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def _probe(model: Path, *, threads: int, cpu_variant: str, tokens: int, argv: list[str] | None) -> dict[str, object]:
    passed_over: dict[str, str] = {}
    while True:
        extra = [a for tag in passed_over for a in ("--exclude-variant", tag)]
        try:
            report = check_in_child(
                model, threads=threads, cpu_variant=cpu_variant, tokens=tokens, extra=extra, argv=argv
            )
        except _ChildDied as died:
            if cpu_variant != "auto" or died.variant is None or died.variant in passed_over:
                raise ModelError(died.message) from None
            passed_over[died.variant] = died.how
            continue
        report["passed_over"] = passed_over
        return report


class _ChildDied(ModelError):
    def __init__(self, message: str, variant: str | None, how: str) -> None:
        super().__init__(message)
        self.message, self.variant, self.how = message, variant, how


def check_in_child(
    model: Path,
    *,
    threads: int,
    cpu_variant: str = "auto",
    tokens: int = 1,
    extra: list[str] | None = None,
    timeout_s: float = 300.0,
    argv: list[str] | None = None,
) -> dict[str, object]:
    """Run the self-test on `model` in a child process; its report, or ModelError saying why not.

    `argv` replaces the command (tests make a child that dies of a signal).
    """
    command = (argv or [
        sys.executable, "-m", "workers.decoder.selftest", "--model", str(model), "--tokens", str(tokens),
        "--threads", str(threads), "--cpu-variant", cpu_variant,
    ]) + (extra or [])  # fmt: skip
    try:
        child = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ModelError(f"llama.cpp's self-test on {model.name} did not finish in {timeout_s:.0f} s") from exc
    if child.returncode < 0:  # killed by a signal: say which variant it was running
        tried = [line.removeprefix(_TRYING) for line in child.stderr.splitlines() if line.startswith(_TRYING)]
        variant = tried[-1] if tried else None
        how = describe_exit(child.returncode)
        where = f" with CPU variant {variant}" if variant else ""
        raise _ChildDied(f"llama.cpp's self-test on {model.name}{where} {how}", variant, how)
    if child.returncode != 0:
        # Its own last line says why it gave up.
        said = child.stderr.strip().splitlines()[-1:]
        detail = f": {said[0]}" if said else ""
        raise ModelError(f"llama.cpp's self-test on {model.name} {describe_exit(child.returncode)}{detail}")
    report: dict[str, object] = json.loads(child.stdout.strip().splitlines()[-1])
    return report


if __name__ == "__main__":
    sys.exit(main())
