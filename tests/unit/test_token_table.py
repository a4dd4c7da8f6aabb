"""TokenTable's own walk of a GGUF header finds the rows gguf's full reader finds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFReader, GGUFWriter
from gguf.quants import dequantize, quantize

from workers.decoder.token_table import TokenTable


def _write(path: Path, embd: np.ndarray, kind: GGMLQuantizationType, alignment: int | None) -> None:
    writer = GGUFWriter(path, "llama")
    if alignment is not None:
        writer.add_custom_alignment(alignment)
    writer.add_token_list([f"word{i}" for i in range(embd.shape[0])])  # an array of strings to step over
    writer.add_array("test.floats", [0.5, 1.5])
    writer.add_uint32("test.count", 7)
    writer.add_tensor("output_norm.weight", np.ones(embd.shape[1], np.float32))
    data = embd if kind == GGMLQuantizationType.F32 else quantize(embd, kind)
    writer.add_tensor("token_embd.weight", data, raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.mark.parametrize(
    ("kind", "alignment"),
    [(GGMLQuantizationType.F32, None), (GGMLQuantizationType.F16, 64), (GGMLQuantizationType.Q8_0, None)],
)
def test_rows_match_the_full_reader(tmp_path: Path, kind: GGMLQuantizationType, alignment: int | None):
    embd = np.random.default_rng(0).standard_normal((40, 64)).astype(np.float32)
    path = tmp_path / "tiny.gguf"
    _write(path, embd, kind, alignment)
    table = TokenTable(path)
    assert (table.width, table.vocab_size) == (64, 40)

    reference = {t.name: t for t in GGUFReader(path, "r").tensors}["token_embd.weight"]
    ids = [0, 3, 39, 3]
    expected = np.asarray(dequantize(np.ascontiguousarray(reference.data[ids]), kind), np.float32).reshape(4, 64)
    np.testing.assert_array_equal(table.rows(ids), expected)
    np.testing.assert_allclose(table.rows(ids), embd[ids], atol=0.05)  # and they are the rows written


def test_a_file_without_the_table_is_refused(tmp_path: Path):
    path = tmp_path / "none.gguf"
    writer = GGUFWriter(path, "llama")
    writer.add_tensor("output_norm.weight", np.ones(8, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ValueError, match="no token_embd.weight"):
        TokenTable(path)
