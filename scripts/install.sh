#!/usr/bin/env bash
# Creates .venv at the repository root and installs mmstream with every worker kind.
#   scripts/install.sh          runtime (gateway, workers, bundled models): requirements/runtime.lock
#   scripts/install.sh --dev    plus the test and lint tools: requirements/dev.lock
# Dependencies come only from those hash-pinned lock files (`make lock` rewrites them from pyproject.toml).
# llama-cpp-python compiles from source (about 15 minutes on 2 cores). The built wheel is kept in
# ~/.cache/mmstream/wheels under a hash of its build flags, so later installs take seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
LLAMA_VERSION=$(sed -n 's/^llama-cpp-python==\([0-9.]*\).*/\1/p' requirements/llama.lock)
# GGML_NATIVE=OFF with explicit ISA flags: the default native build dies with "Illegal instruction"
# on these machines. AVX-VNNI (the VEX form) is left off: AMD EPYC (Zen 4) has AVX512-VNNI but not it.
LLAMA_CMAKE_ARGS=${MMSTREAM_LLAMA_CMAKE_ARGS:-"-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON"}

lock=requirements/runtime.lock
[[ "${1:-}" == "--dev" ]] && lock=requirements/dev.lock

[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
pip=(.venv/bin/python -m pip)

# Every package comes from the lock file with its sha256: a changed or substituted file fails the
# install. (pip checks hashes of what it installs, not of the tools a source build pulls in.)
"${pip[@]}" install --quiet --require-hashes -r "$lock"

flags_hash=$(printf '%s %s' "$LLAMA_VERSION" "$LLAMA_CMAKE_ARGS" | sha256sum | cut -c1-16)
wheel_dir="${XDG_CACHE_HOME:-$HOME/.cache}/mmstream/wheels/llama-$flags_hash"
if ! ls "$wheel_dir"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
  echo "Building llama-cpp-python $LLAMA_VERSION from source (once; about 15 minutes on 2 cores)..."
  mkdir -p "$wheel_dir"
  # The source archive is checked against requirements/llama.lock before it is built.
  CMAKE_ARGS="$LLAMA_CMAKE_ARGS" "${pip[@]}" wheel --quiet --no-deps --no-cache-dir --require-hashes \
    --no-binary llama-cpp-python -w "$wheel_dir" -r requirements/llama.lock
fi
"${pip[@]}" install --quiet --no-deps --no-index "$wheel_dir"/llama_cpp_python-"$LLAMA_VERSION"-*.whl

# mmstream itself, editable; its dependencies are all in place from the lock.
"${pip[@]}" install --quiet --no-deps --no-build-isolation -e .
"${pip[@]}" check
echo "Installed mmstream into .venv from $lock."
