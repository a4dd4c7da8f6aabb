"""Who may import whom: serving code never imports training or the command line, the gateway no model
library, and the HTTP API does not reach into the websocket's modules. Read from the source, so a new
import fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# package -> packages it must not import
FORBIDDEN = {
    "workers": ("cli", "training", "gateway"),
    "shared": ("cli", "training", "gateway", "workers"),
    "gateway": (
        "cli",
        "training",
        "workers",
        "torch",
        "faster_whisper",
        "open_clip",
        "onnxruntime",
        "llama_cpp",
        "piper",
    ),
    "gateway/http": ("gateway.realtime",),
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_serving_code_keeps_to_its_layer(package: str):
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in _imports(path):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[package]):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, bad
