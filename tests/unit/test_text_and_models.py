import hashlib
from pathlib import Path

import pytest

from shared.errors import ModelError
from shared.models import resolve_model
from workers.decoder.host_cache import common_prefix
from workers.decoder.llama import TextStream


def test_text_stream_never_splits_a_character():
    stream = TextStream()
    data = "é😀".encode()
    out = [stream.push(data[i : i + 1]) for i in range(len(data))]
    assert "".join(out) + stream.flush() == "é😀"
    assert all(len(o) in (0, 1) for o in out)


def testcommon_prefix():
    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix([], [1]) == 0


def test_path_model_is_checked_by_sha256(tmp_path: Path):
    f = tmp_path / "m.gguf"
    f.write_bytes(b"weights")
    digest = hashlib.sha256(b"weights").hexdigest()
    assert resolve_model(str(f), tmp_path, expected_sha256=digest).sha256 == digest
    with pytest.raises(ModelError, match="expected"):
        resolve_model(str(f), tmp_path, expected_sha256="0" * 64)
    with pytest.raises(ModelError, match="not found"):
        resolve_model(str(tmp_path / "missing.gguf"), tmp_path)


def test_unknown_bundled_model_and_hub_without_permission(tmp_path: Path):
    with pytest.raises(ModelError, match="unknown bundled model"):
        resolve_model("bundled:nope", tmp_path)
    with pytest.raises(ModelError, match="downloads are off"):
        resolve_model("hf:org/repo/file.gguf", tmp_path)
