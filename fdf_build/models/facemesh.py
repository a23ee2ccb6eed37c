"""MediaPipe's 468-point face mesh (``face_landmark.tflite``, Apache-2.0, shipped in ``fdf_build/models/``) on
ai-edge-litert, without the mediapipe package.

The stable interface, for every module that reads a face's shape (head pose, alignment, occlusion)::

    mesh = FaceMesh(threads=1)           # one interpreter; calls from several threads take turns
    points = mesh(rgb, box)              # rgb: (H, W, 3) uint8; box: (x0, y0, x1, y1) in its pixels
    # -> (468, 3) float64: x, y in image pixels, z depth on the x scale (growing away from the camera),
    #    in MediaPipe's point order (FACE_OVAL, and MediaPipe's published mesh maps, name the indices); or None
    #    when the model sees no face there (its face score under min_score)

The model runs on the face box (grown ``FIRST_SCALE``), then once more on the region its first answer gives
(grown 1.5x and rotated upright by the eye corners, as MediaPipe's own tracking step does), so the detector's box
style matters little. Those regions may reach past the image (FDF256's crops are only 1.4x the face): there the
edge pixels are repeated (MediaPipe's default border), not zeros, which lose turned faces.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Optional, Sequence

import cv2
import numpy as np
from numpy.typing import NDArray

from . import weights

#: the first region's side over the face box's longer side (chosen among 1.2, 1.35, 1.5 on tests/data/attributes)
FIRST_SCALE = 1.35
MESH_EYE_OUTER = (33, 263)  # person's right, left: MediaPipe's rotation reference
#: the face's outline, in order around it (MediaPipe's FACEMESH_FACE_OVAL, face_mesh_connections.py)
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148,
             176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)


def face_oval() -> list[int]:
    """The face-mesh points on the face's outline, in index order."""
    return sorted(FACE_OVAL)


@dataclass(frozen=True)
class Region:
    """A rotated square of an image (centre, side, angle in radians, clockwise on screen) resampled to ``size``."""

    cx: float
    cy: float
    side: float
    angle: float
    size: int

    def matrix(self) -> NDArray[np.float64]:
        """2x3 affine from image pixels to region pixels."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        k = self.size / self.side
        # rotate by -angle about the centre (undo the face's tilt), scale, move the centre to the middle
        m = np.array([[c * k, s * k, 0.0], [-s * k, c * k, 0.0]])
        m[:, 2] = self.size / 2 - m[:, :2] @ (self.cx, self.cy)
        return m

    def cut(self, image: NDArray[np.uint8], border: int = cv2.BORDER_CONSTANT) -> NDArray[np.uint8]:
        return cv2.warpAffine(image, self.matrix(), (self.size, self.size), flags=cv2.INTER_LINEAR,
                              borderMode=border, borderValue=0)

    def to_image(self, points: NDArray) -> NDArray[np.float64]:
        """Region pixels (``(N, 2)`` or ``(N, 3)``; z is scaled like x) back to image pixels."""
        m = np.vstack([self.matrix(), [0, 0, 1]])
        inverse = np.linalg.inv(m)[:2]
        out = np.asarray(points, dtype=np.float64).copy()
        out[:, :2] = out[:, :2] @ inverse[:, :2].T + inverse[:, 2]
        if out.shape[1] > 2:
            out[:, 2] *= self.side / self.size
        return out


def region_around(points: NDArray, *, scale: float, angle: float, size: int) -> Region:
    """MediaPipe's ``landmarks/detection -> ROI``: the box of ``points`` in the frame rotated by ``angle``,
    made square on its longer side and grown by ``scale``."""
    c, s = math.cos(angle), math.sin(angle)
    pts = np.asarray(points, dtype=np.float64)[:, :2]
    rotated = pts @ np.array([[c, -s], [s, c]])  # into the upright frame
    lo, hi = rotated.min(0), rotated.max(0)
    centre = ((lo + hi) / 2) @ np.array([[c, s], [-s, c]])  # back to the image frame
    return Region(float(centre[0]), float(centre[1]), float(max(hi - lo)) * scale, angle, size)


class FaceMesh:
    """468 face-mesh points (x, y in image pixels, z depth on the x scale, growing away from the camera)."""

    SIZE = 192
    FILE = "face_landmark.tflite"
    name = f"mediapipe {FILE}"

    def __init__(self, *, threads: int = 1, min_score: float = 0.5):
        self._interpreter = weights.tflite_interpreter(self.FILE, threads=threads)
        entry = weights.manifest()[self.FILE]
        #: the model, the release its file comes from, and its license, for the records that name their models
        self.provenance = f"{self.name} ({entry['release']}, {entry['license']})"
        self._input = self._interpreter.get_input_details()[0]["index"]
        outputs = {d["name"]: d["index"] for d in self._interpreter.get_output_details()}
        self._landmarks, self._score = outputs["conv2d_21"], outputs["conv2d_31"]
        self._lock = threading.Lock()  # one interpreter: calls from several threads take turns
        self.min_score = min_score

    def _run(self, image: NDArray[np.uint8], region: Region) -> tuple[NDArray, float]:
        # the mesh's regions (1.5x the face) reach past FDF256's 1.4x crop: black margins there make the model
        # lose turned faces, so the crop's edge pixels are repeated outward, as MediaPipe's own face-landmark
        # graph does (its cropping sets BORDER_REPLICATE, ImageToTensor's default)
        x = region.cut(image, cv2.BORDER_REPLICATE).astype(np.float32)[None] / 255
        with self._lock:
            self._interpreter.set_tensor(self._input, x)
            self._interpreter.invoke()
            points = self._interpreter.get_tensor(self._landmarks).reshape(468, 3).astype(np.float64)
            logit = float(self._interpreter.get_tensor(self._score).reshape(-1)[0])
        return region.to_image(points), 1 / (1 + math.exp(-logit))

    def __call__(self, image: NDArray[np.uint8], box: Sequence[float]) -> Optional[NDArray[np.float64]]:
        """The mesh of the face in ``box`` (x0, y0, x1, y1 image pixels); None when the model sees no face there."""
        x0, y0, x1, y1 = (float(v) for v in box)
        corners = np.array([[x0, y0], [x1, y1]])
        # a detector's box (RetinaFace, DSFD) spans more of the head than BlazeFace's, hence 1.35, not 1.5; the
        # detector's eyes are not used to turn this first region: on turned faces they mislead the mesh
        points, _ = self._run(image, region_around(corners, scale=FIRST_SCALE, angle=0.0, size=self.SIZE))
        right, left = points[MESH_EYE_OUTER[0], :2], points[MESH_EYE_OUTER[1], :2]
        angle = math.atan2(left[1] - right[1], left[0] - right[0])
        points, score = self._run(image, region_around(points, scale=1.5, angle=angle, size=self.SIZE))
        return points if score >= self.min_score else None
