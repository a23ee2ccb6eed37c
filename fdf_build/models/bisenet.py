"""zllrunning's face-parsing BiSeNet (ResNet-18 context path, 19 CelebAMask-HQ classes) written as an ONNX graph
from its state dict, so it runs on onnxruntime without torch.

The graph is the network's inference path only (the auxiliary heads ``conv_out16``/``conv_out32`` are training
aids and are left out), with every BatchNorm folded into the convolution before it. Input: ``(N, 3, S, S)`` RGB in
0..255 with S a multiple of 32 (ImageNet normalisation is the graph's first step); output: per-pixel class
probabilities ``(N, 19, S, S)``, the softmax of the network's bilinearly upsampled logits.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from .onnxgraph import GraphBuilder

CLASSES = ("background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r", "nose",
           "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat")
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # torchvision's ImageNet normalisation, as trained
BN_EPS = 1e-5


class _Net:
    def __init__(self, weights: dict[str, NDArray]):
        self.w = weights
        self.b = GraphBuilder()

    def conv(self, x: str, prefix: str, *, stride: int = 1, bn: str = None, relu: bool = False) -> str:
        """Conv2d ``prefix.weight`` (padding keeps the size at stride 1), BatchNorm ``bn`` folded in, then ReLU."""
        weight = self.w[f"{prefix}.weight"].astype(np.float64)
        bias = np.zeros(weight.shape[0])
        if bn is not None:
            scale = self.w[f"{bn}.weight"] / np.sqrt(self.w[f"{bn}.running_var"] + BN_EPS)
            weight = weight * scale[:, None, None, None]
            bias = self.w[f"{bn}.bias"] - self.w[f"{bn}.running_mean"] * scale
        k = weight.shape[-1]
        b = self.b
        out = b.node("Conv", [x, b.const(b.name(f"{prefix}.w"), weight), b.const(b.name(f"{prefix}.b"), bias)],
                     b.name(prefix), strides=[stride, stride], pads=[k // 2] * 4)
        return b.node("Relu", [out], b.name(f"{prefix}.relu")) if relu else out

    def conv_bn_relu(self, x: str, prefix: str, stride: int = 1) -> str:
        return self.conv(x, f"{prefix}.conv", stride=stride, bn=f"{prefix}.bn", relu=True)

    def block(self, x: str, prefix: str, stride: int) -> str:
        r = self.conv(x, f"{prefix}.conv1", stride=stride, bn=f"{prefix}.bn1", relu=True)
        r = self.conv(r, f"{prefix}.conv2", bn=f"{prefix}.bn2")
        if f"{prefix}.downsample.0.weight" in self.w:
            x = self.conv(x, f"{prefix}.downsample.0", stride=stride, bn=f"{prefix}.downsample.1")
        return self.b.node("Relu", [self.b.node("Add", [x, r], self.b.name(f"{prefix}.add"))], self.b.name(prefix))

    def attention(self, x: str, prefix: str) -> str:
        """Attention refinement: features times the sigmoid of a 1x1 conv of their global mean."""
        b = self.b
        feat = self.conv_bn_relu(x, f"{prefix}.conv")
        pooled = b.node("GlobalAveragePool", [feat], b.name(f"{prefix}.pool"))
        gate = b.node("Sigmoid", [self.conv(pooled, f"{prefix}.conv_atten", bn=f"{prefix}.bn_atten")],
                      b.name(f"{prefix}.gate"))
        return b.node("Mul", [feat, gate], b.name(prefix))

    def up2(self, x: str) -> str:
        """torch's ``interpolate(mode='nearest')`` to twice the size: every pixel repeated 2x2."""
        b = self.b
        return b.node("Resize", [x, "", b.const(b.name("scales"), [1, 1, 2, 2])], b.name("up2"),
                      mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")

    def graph(self, size_in: str) -> str:
        b = self.b
        x = b.node("Sub", [size_in, b.const("mean", np.array(MEAN).reshape(1, 3, 1, 1) * 255)], "centred")
        x = b.node("Mul", [x, b.const("inv_std", 1 / (np.array(STD).reshape(1, 3, 1, 1) * 255))], "normalised")
        x = self.conv(x, "cp.resnet.conv1", stride=2, bn="cp.resnet.bn1", relu=True)
        x = b.node("MaxPool", [x], "maxpool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
        features = []
        for layer, stride in ((1, 1), (2, 2), (3, 2), (4, 2)):
            x = self.block(x, f"cp.resnet.layer{layer}.0", stride)
            x = self.block(x, f"cp.resnet.layer{layer}.1", 1)
            features.append(x)
        feat8, feat16, feat32 = features[1:]
        # the global context: nearest-upsampling a 1x1 map is a broadcast, so Add does it
        context = self.conv_bn_relu(b.node("GlobalAveragePool", [feat32], "context_pool"), "cp.conv_avg")
        up32 = self.conv_bn_relu(self.up2(b.node("Add", [self.attention(feat32, "cp.arm32"), context], "sum32")),
                                 "cp.conv_head32")
        up16 = self.conv_bn_relu(self.up2(b.node("Add", [self.attention(feat16, "cp.arm16"), up32], "sum16")),
                                 "cp.conv_head16")
        # feature fusion: the spatial path is ResNet's 1/8 features; channel attention, added back
        fused = self.conv_bn_relu(b.node("Concat", [feat8, up16], "concat", axis=1), "ffm.convblk")
        gate = b.node("Relu", [self.conv(b.node("GlobalAveragePool", [fused], "ffm_pool"), "ffm.conv1")], "ffm_relu")
        gate = b.node("Sigmoid", [self.conv(gate, "ffm.conv2")], "ffm_gate")
        fused = b.node("Add", [b.node("Mul", [fused, gate], "ffm_mul"), fused], "ffm")
        logits = self.conv(self.conv_bn_relu(fused, "conv_out.conv"), "conv_out.conv_out")
        return logits


def build_onnx(weights: dict[str, NDArray], *, source: str) -> bytes:
    """The ONNX bytes of the network with these weights (the state dict of zllrunning's ``BiSeNet(19)``)."""
    net = _Net(weights)
    b = net.b
    logits = net.graph("rgb")
    # align_corners=True bilinear back to the input's size, as the network's own forward does
    shape = b.node("Shape", ["rgb"], "input_shape")
    sizes = b.node("Concat", [b.node("Slice", [b.node("Shape", [logits], "logit_shape"), b.const("s0", [0], np.int64),
                                                b.const("s2", [2], np.int64)], "nc"),
                              b.node("Slice", [shape, b.const("s2b", [2], np.int64), b.const("s4", [4], np.int64)],
                                     "hw")], "sizes", axis=0)
    up = b.node("Resize", [logits, "", "", sizes], "logits_full", mode="linear",
                coordinate_transformation_mode="align_corners")
    b.node("Softmax", [up], "probabilities", axis=1)
    return b.model_bytes("face_parsing_bisenet", [("rgb", ["N", 3, "S", "S"])],
                         [("probabilities", ["N", len(CLASSES), "S", "S"])],
                         doc=f"face-parsing BiSeNet (zllrunning), 19 CelebAMask-HQ classes, from {source}; "
                             "input RGB 0..255 NCHW, side a multiple of 32",
                         producer="fdf_build.models.bisenet")
