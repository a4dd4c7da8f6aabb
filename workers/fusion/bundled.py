"""The projectors that ship with mmstream, for the default CLIP and language model."""

from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).parent / "weights"
BUNDLED_IMAGE_PROJECTOR = WEIGHTS_DIR / "image-mmstream-clip-tiny-qwen2.5-coder-0.5b.safetensors"
BUNDLED_AUDIO_PROJECTOR = WEIGHTS_DIR / "audio-whisper-tiny.en-qwen2.5-coder-0.5b.safetensors"
# From `mmstream train projector --seed 0` (see its .json report beside it).
BUNDLED_IMAGE_PROJECTOR_SHA256 = "1672a89521dfb733bb73ff1019763ac3db16c8aaf9935d478dba722ccfb519cb"
# From `mmstream train projector --modality audio --seed 0`.
BUNDLED_AUDIO_PROJECTOR_SHA256 = "bb69e4828018cca5a3aaa5796e38a35ade9fef8243235066d3b38179e39cbc92"
