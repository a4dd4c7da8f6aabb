#!/usr/bin/env bash
# The three programs the test suite needs besides Python packages: espeak-ng (real speech for the audio
# tests), chromium (the web page test) and qemu-user (llama.cpp run as older CPUs would). Installed from
# Debian when missing and this user can (root, or sudo without a password); else the command to run.
set -euo pipefail
missing=()
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
command -v chromium >/dev/null || missing+=(chromium)
command -v qemu-x86_64 >/dev/null || missing+=(qemu-user)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "The tests need ${missing[*]}; install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null; then
  echo "The tests need ${missing[*]} (Debian package names); install them with this system's package manager." >&2
  exit 1
fi
echo "Installing ${missing[*]} for the tests (apt-get)..."
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
