"""Add a feature output to an ONNX image classifier, for ``adakit features --model``.

The output (default name ``feat``) is the pooled feature vector that feeds the model's last
classification layer (Gemm / MatMul / QLinearMatMul), flattened to (N, d); in a quantised model it is
dequantised first. The input and the other outputs are unchanged. This regenerates the model the
committed Office-31 features (``office31/features-mobilenetv2``) came from, byte for byte::

    # mobilenetv2-12-int8.onnx: the ONNX model zoo's int8 MobileNetV2 (Apache-2.0), from
    # https://github.com/onnx/models  validated/vision/classification/mobilenet/model/mobilenetv2-12-int8.onnx
    python scripts/export_onnx_features.py mobilenetv2-12-int8.onnx mobilenetv2-12-int8_with_feat.onnx
    adakit features IMAGES --model mobilenetv2-12-int8_with_feat.onnx --out amazon.npz

``--tensor NAME`` picks another intermediate tensor instead (any node output of the graph). Needs the
``onnx`` package (``pip install onnx``, the adakit ``onnx`` extra).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import onnx
from onnx import TensorProto, helper

CLASSIFIERS = ("Gemm", "MatMul", "QLinearMatMul")
PASS_THROUGH = ("Reshape", "Flatten", "Squeeze")


def _producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in graph.node for out in node.output}


def pooled_input(graph: onnx.GraphProto) -> tuple[str, onnx.NodeProto]:
    """(tensor, classifier node): the tensor that the last classification layer reads, before any reshape."""
    fc = next((n for n in reversed(graph.node) if n.op_type in CLASSIFIERS), None)
    if fc is None:
        raise ValueError(f"no classification layer ({'/'.join(CLASSIFIERS)}) in the graph; give --tensor")
    producers = _producers(graph)
    tensor = fc.input[0]
    while tensor in producers and producers[tensor].op_type in PASS_THROUGH:
        tensor = producers[tensor].input[0]
    return tensor, fc


def _feature_dim(graph: onnx.GraphProto, fc: onnx.NodeProto) -> int | None:
    """Input size of the classification layer, from its weight initializer (None when not a constant)."""
    weights = {i.name: i for i in graph.initializer}
    name = fc.input[3] if fc.op_type == "QLinearMatMul" else fc.input[1]
    if name not in weights:
        return None
    dims = list(weights[name].dims)
    if fc.op_type == "Gemm" and any(a.name == "transB" and a.i for a in fc.attribute):
        return dims[1]
    return dims[0]


def add_feature_output(model: onnx.ModelProto, tensor: str | None = None, name: str = "feat") -> onnx.ModelProto:
    """Append the nodes and the graph output ``name`` (N, d) float32 to ``model`` (in place; also returned)."""
    graph = model.graph
    if name in {o.name for o in graph.output} or name in _producers(graph):
        raise ValueError(f"the graph already has a tensor named {name!r}")
    fc, dim = None, None
    if tensor is None:
        tensor, fc = pooled_input(graph)
        dim = _feature_dim(graph, fc)
    elif tensor not in _producers(graph):
        raise ValueError(f"no node output named {tensor!r} in the graph")
    source = tensor
    if fc is not None and fc.op_type == "QLinearMatMul":  # int8 graph: dequantise with the layer's input scale
        graph.node.append(helper.make_node("DequantizeLinear", [tensor, fc.input[1], fc.input[2]], [f"{name}4d"]))
        source = f"{name}4d"
    graph.node.append(helper.make_node("Flatten", [source], [name], axis=1))
    first = graph.output[0].type.tensor_type.shape.dim[0] if graph.output else None
    batch = first.dim_param if first is not None and first.dim_param else "N"
    graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [batch, dim]))
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="ONNX classifier, e.g. the model zoo's mobilenetv2-12-int8.onnx")
    parser.add_argument("out", type=Path, help="the ONNX file to write")
    parser.add_argument("--tensor", help="intermediate tensor to expose (default: the last layer's input)")
    parser.add_argument("--name", default="feat", help="name of the new output (adakit features --output)")
    args = parser.parse_args(argv)
    model = onnx.load(args.model)
    try:
        add_feature_output(model, args.tensor, args.name)
    except ValueError as err:
        print(f"error: {args.model}: {err}", file=sys.stderr)
        return 2
    onnx.save(model, args.out)
    out = model.graph.output[-1].type.tensor_type.shape.dim
    print(f"wrote {args.out}: output {args.name!r} of shape ({out[0].dim_param}, {out[1].dim_value or '?'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
