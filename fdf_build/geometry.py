"""Cropping: pure numpy geometry from a face box in the photo to a square, resampled face crop.

Coordinates are continuous pixel coordinates: pixel ``(i, j)`` covers
``[i, i+1) x [j, j+1)``, so a box ``(0, 0, W, H)`` is the whole image. One
:class:`CropTransform` is computed per face and applied to the pixels, the box
and the keypoints alike, so they cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class CropTransform:
    """The square ``[x0, x0 + side) x [y0, y0 + side)`` of the photo (integer pixels, may leave the photo),
    resampled to ``out_size x out_size``."""

    x0: int
    y0: int
    side: int
    out_size: int

    @property
    def scale(self) -> float:
        return self.out_size / self.side

    def forward(self, points: NDArray) -> NDArray[np.float32]:
        """Photo coordinates -> crop coordinates, for ``(..., 2)`` points (NaN stays NaN)."""
        points = np.asarray(points, dtype=np.float64)
        return ((points - (self.x0, self.y0)) * self.scale).astype(np.float32)

    def inverse(self, points: NDArray) -> NDArray[np.float64]:
        points = np.asarray(points, dtype=np.float64)
        return points / self.scale + (self.x0, self.y0)

    def forward_box(self, box: NDArray) -> NDArray[np.float32]:
        return self.forward(np.asarray(box, dtype=np.float64).reshape(2, 2)).reshape(4)


def square_around(box: NDArray, *, expand: float, out_size: int) -> CropTransform:
    """The square crop centred on ``box`` with side ``max(w, h) * expand``, rounded to whole pixels.

    Rounding to whole pixels makes the crop an exact pixel copy before resampling,
    so the same photo always gives the same bytes.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(1, int(round(max(x1 - x0, y1 - y0) * expand)))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return CropTransform(int(np.floor(cx - side / 2 + 0.5)), int(np.floor(cy - side / 2 + 0.5)), side, out_size)


def crop(image: NDArray[np.uint8], t: CropTransform) -> NDArray[np.uint8]:
    """Cut the square out of ``image`` (H, W, C), zero-padding where it leaves the photo, and resample it.

    Area interpolation when shrinking (no aliasing), bicubic when enlarging.
    """
    h, w = image.shape[:2]
    out = np.zeros((t.side, t.side) + image.shape[2:], dtype=image.dtype)
    sx0, sy0 = max(t.x0, 0), max(t.y0, 0)
    sx1, sy1 = min(t.x0 + t.side, w), min(t.y0 + t.side, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - t.y0 : sy1 - t.y0, sx0 - t.x0 : sx1 - t.x0] = image[sy0:sy1, sx0:sx1]
    if t.side == t.out_size:
        return out
    interpolation = cv2.INTER_AREA if t.side > t.out_size else cv2.INTER_CUBIC
    return cv2.resize(out, (t.out_size, t.out_size), interpolation=interpolation)


def box_iou(a, b) -> float:
    """Intersection over union of two x0, y0, x1, y1 boxes."""
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


@dataclass(frozen=True)
class Fitted:
    """A photo shrunk (never enlarged) so its longer side is at most a model's input side.

    ``scale`` maps original-photo pixels to ``image`` pixels, per axis (x, y); the
    batched reference backends make these in worker threads, beside the GPU.
    """

    image: np.ndarray
    scale: np.ndarray

    @classmethod
    def of(cls, image: np.ndarray, max_side: int) -> "Fitted":
        h, w = image.shape[:2]
        factor = min(1.0, max_side / max(h, w))
        if factor < 1.0:
            size = (max(1, round(w * factor)), max(1, round(h * factor)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        fh, fw = image.shape[:2]
        return cls(np.ascontiguousarray(image), np.array([fw / w, fh / h], dtype=np.float32))

    def to_original(self, points: np.ndarray) -> np.ndarray:
        """``(..., 2)`` points in ``image`` pixels to original-photo pixels."""
        return points / self.scale
