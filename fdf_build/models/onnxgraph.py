"""A small helper that writes ONNX graphs node by node from weights in numpy arrays.

Used where a model's weights come in a file onnxruntime cannot read (a Keras HDF5, a torch pickle): the network is
written down again as ONNX nodes around the same weights, so no TensorFlow or torch is needed to run it.
"""

from __future__ import annotations

import numpy as np


class GraphBuilder:
    """Collects nodes and constant tensors; ``model_bytes`` checks and serialises the graph (needs ``onnx``)."""

    def __init__(self):
        self.nodes, self.inits = [], []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, name: str, array: np.ndarray, dtype=np.float32) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=dtype), name))
        return name

    def node(self, op: str, inputs: list, output: str, **attrs) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def model_bytes(self, name: str, inputs: list[tuple[str, list]], outputs: list[tuple[str, list]], *,
                    doc: str, producer: str, opset: int = 13) -> bytes:
        """The graph as ONNX bytes; ``inputs`` and ``outputs`` are (name, shape) of float32 tensors."""
        import onnx
        from onnx import TensorProto, helper

        graph = helper.make_graph(self.nodes, name,
                                  [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                                  [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs],
                                  self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name=producer)
        model.ir_version = 8
        model.doc_string = doc
        onnx.checker.check_model(model)
        return model.SerializeToString()
