"""Where our own CLIP checkpoint lies and its sha256 (no torch import, so the CLI can list it)."""

from pathlib import Path

CONFIG_DIR = Path(__file__).parent / "model_configs"
BUNDLED_WEIGHTS = Path(__file__).parent / "weights" / "mmstream-clip-tiny.safetensors"
# The checkpoint `mmstream train clip` (seed 0) produced; its run is described in the .json beside it.
BUNDLED_SHA256 = "db434e024c94946dc0be9070216ef7ccf133389a48b7c806eda2d8d24219c481"
