"""Smart Turn's int8 QDQ ONNX model as a float model: weights dequantized, activations' fake quantization removed.

    PYTHONPATH=<onnx and ml_dtypes wheels, unzipped> python scripts/smart_turn_float.py IN.onnx OUT.onnx

Why: onnxruntime runs the int8 model with kernels that differ by instruction set. On a CPU without AVX-512 VNNI
(an emulated Haswell here) it answered 0.923 where VNNI answered 0.728, and 0.015 where VNNI answered 0.083. The
float model answers the same on both (docs/benchmarks.md, "Turn-taking"). `onnx` is not a dependency of mmstream
yet: this is the measurement's tool, kept for when the install derives the float model itself.
"""

from __future__ import annotations

import sys

import numpy as np
import onnx
from onnx import numpy_helper


def dequantized(model: onnx.ModelProto) -> onnx.ModelProto:
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    renamed: dict[str, str] = {}  # a fake-quantized activation -> the float it came from
    weights: list[onnx.TensorProto] = []
    kept: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:  # a weight: (q - zero point) * scale
            weights.append(numpy_helper.from_array(_dequantize(node, inits), node.output[0]))
        elif (
            node.op_type == "DequantizeLinear"
            and getattr(producers.get(node.input[0]), "op_type", "") == "QuantizeLinear"
        ):
            renamed[node.output[0]] = producers[node.input[0]].input[0]
        else:
            kept.append(node)
    dequantizing = {node.input[0] for node in graph.node if node.op_type == "DequantizeLinear"}
    kept = [n for n in kept if not (n.op_type == "QuantizeLinear" and all(o in dequantizing for o in n.output))]
    for node in kept:
        for i, given in enumerate(node.input):
            source = given
            while source in renamed:
                source = renamed[source]
            node.input[i] = source
    used = {name for node in kept for name in node.input}
    initializers = [i for i in graph.initializer if i.name in used] + [w for w in weights if w.name in used]
    del graph.node[:]
    graph.node.extend(kept)
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    onnx.checker.check_model(model)
    return model


def _dequantize(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> np.ndarray:
    q = numpy_helper.to_array(inits[node.input[0]]).astype(np.float32)
    scale = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
    has_zero = len(node.input) > 2 and node.input[2]
    zero = numpy_helper.to_array(inits[node.input[2]]).astype(np.float32) if has_zero else np.zeros_like(scale)
    if scale.ndim == 1 and scale.size > 1:  # per channel, along `axis`
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        shape = [1] * q.ndim
        shape[axis] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    out: np.ndarray = ((q - zero) * scale).astype(np.float32)
    return out


if __name__ == "__main__":
    onnx.save(dequantized(onnx.load(sys.argv[1])), sys.argv[2])
