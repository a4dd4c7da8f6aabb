"""The projectors that ship with mmstream: for the default CLIP and Whisper, one per bundled language model.

`image_projector` and `audio_projector` set to `bundled` (the default) picks the one trained for the language model the
decoder loaded, by that model's sha256; each file's header names the model too, and is checked again
when it is loaded (workers/fusion/inputs.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

WEIGHTS_DIR = Path(__file__).parent / "weights"

Modality = Literal["image", "audio"]

_QWEN_05B = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
_QWEN_15B = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
_LLM_NAMES = {_QWEN_05B: "qwen2.5-coder-0.5b", _QWEN_15B: "qwen2.5-coder-1.5b"}
_ENCODERS: dict[Modality, str] = {"image": "mmstream-clip-tiny", "audio": "whisper-tiny.en"}


@dataclass(frozen=True)
class BundledProjector:
    path: Path
    sha256: str  # of the file: from `mmstream train projector --modality M --seed 0` (its .json report beside it)


def projector_path(modality: Modality, llm_sha256: str) -> Path:
    """Where the bundled projector for a language model lives (or is written by training)."""
    llm = _LLM_NAMES.get(llm_sha256, llm_sha256[:12])
    return WEIGHTS_DIR / f"{modality}-{_ENCODERS[modality]}-{llm}.safetensors"


_SHA256: dict[tuple[Modality, str], str] = {
    ("image", _QWEN_05B): "1672a89521dfb733bb73ff1019763ac3db16c8aaf9935d478dba722ccfb519cb",
    ("audio", _QWEN_05B): "bb69e4828018cca5a3aaa5796e38a35ade9fef8243235066d3b38179e39cbc92",
    ("image", _QWEN_15B): "0c5a7364dbc13fc70e32d73f1b7b404f9039cfe75af77620e19646a6c6727941",
    ("audio", _QWEN_15B): "6610cef811ae2881cd9eec2d6cc3ffcf01492c07282c0fc735730e8d971e1d7f",
}


def bundled_projector(modality: Modality, llm_sha256: str) -> BundledProjector | None:
    """The shipped projector of a modality for this language model, if there is one."""
    digest = _SHA256.get((modality, llm_sha256))
    return None if digest is None else BundledProjector(projector_path(modality, llm_sha256), digest)
