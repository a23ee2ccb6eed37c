"""Cropping: pure numpy geometry from a face box in the photo to a square, resampled face crop.

Coordinates are continuous pixel coordinates: pixel ``(i, j)`` covers
``[i, i+1) x [j, j+1)``, so a box ``(0, 0, W, H)`` is the whole image. One
:class:`CropTransform` is computed per face and applied to the pixels, the box
and the keypoints alike, so they cannot drift apart.
"""

from __future__ import annotations

import functools
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


def whole_pixels(box: NDArray) -> NDArray[np.int64]:
    """A detector's box in whole pixels, as DeepPrivacy2 rounds DSFD's (round half to even, like torch)."""
    return np.round(np.asarray(box, dtype=np.float64)).astype(np.int64)


def expand_square(box: NDArray, expand: float) -> tuple[int, int, int, int]:
    """The square (x0, y0, x1, y1) FDF256's crops were cut as: DP2's ``expand_bbox_simple(box, expand - 1)``.

    DeepPrivacy2 (``dp2/detection/box_utils_fdf.py``) centres on ``int(x0) + w // 2``
    and takes ``max(w, h) * (1 + ratio) // 2`` to each side, in floats then truncated
    to int; FDF256 used ratio 0.4. The same float operations are done here, so a
    whole-pixel box gives DP2's integers exactly: the side is even and is
    ``2 * floor(max(w, h) * 1.4 / 2)`` (a 100 x 80 box: 140; 101: 140; 102: 142).
    A box under 2 pixels would give DP2 an empty square; it gets a side of 2.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    width, height = x1 - x0, y1 - y0
    x_c = int(x0) + width // 2
    y_c = int(y0) + height // 2
    half = max(max(width, height) * expand // 2, 1.0)  # 1.4 == 1 + 0.4 in floats: DP2's very product
    return int(x_c - half), int(y_c - half), int(x_c + half), int(y_c + half)


def square_around(box: NDArray, *, expand: float, out_size: int) -> CropTransform:
    """The square crop centred on ``box`` with side ``max(w, h) * expand``, rounded to whole pixels.

    For framing a model's input (face-alignment); dataset crops use :class:`CropGeometry`.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(1, int(round(max(x1 - x0, y1 - y0) * expand)))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return CropTransform(int(np.floor(cx - side / 2 + 0.5)), int(np.floor(cy - side / 2 + 0.5)), side, out_size)


def crop(image: NDArray[np.uint8], t: CropTransform) -> NDArray[np.uint8]:
    """Cut the square out of ``image`` (H, W, C), zero-padding where it leaves the photo, and resample it.

    As DP2's ``cut_pad_resize(..., fdf_resize=True)``, with which FDF256 was cut: cv2's
    INTER_AREA when the part inside the photo has at least ``out_size**2`` pixels,
    else bicubic with antialias (torch's, a = -0.5; see :func:`resize_bicubic_aa`).
    DP2 decides on the part inside the photo, not on the whole square, and so does this.
    """
    h, w = image.shape[:2]
    out = np.zeros((t.side, t.side) + image.shape[2:], dtype=image.dtype)
    sx0, sy0 = max(t.x0, 0), max(t.y0, 0)
    sx1, sy1 = min(t.x0 + t.side, w), min(t.y0 + t.side, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - t.y0 : sy1 - t.y0, sx0 - t.x0 : sx1 - t.x0] = image[sy0:sy1, sx0:sx1]
    if t.side == t.out_size:
        return out
    inside = max(0, sx1 - sx0) * max(0, sy1 - sy0)
    if inside < t.out_size * t.out_size:
        return resize_bicubic_aa(out, t.out_size)
    return cv2.resize(out, (t.out_size, t.out_size), interpolation=cv2.INTER_AREA)


def _cubic(x: NDArray) -> NDArray:
    """Keys' cubic with a = -0.5 (PIL's and torch's antialiased bicubic)."""
    a = -0.5
    x = np.abs(x)
    return np.where(x < 1, ((a + 2) * x - (a + 3)) * x * x + 1, np.where(x < 2, (((x - 5) * x + 8) * x - 4) * a, 0.0))


@functools.lru_cache(maxsize=512)
def _aa_taps(in_size: int, out_size: int) -> tuple[NDArray[np.intp], NDArray[np.float32]]:
    """Taps of torch's ``interpolate(bicubic, antialias=True)`` along one axis: ``(out_size, K)`` input
    indices and weights (unused slots weigh 0).

    Each output pixel's centre maps to ``scale * (i + 0.5)``; the filter is widened by
    ``scale`` when shrinking; taps beyond the border are left out and the rest renormalised.
    """
    scale = in_size / out_size
    support = 2.0 * scale if scale >= 1 else 2.0
    inv = 1.0 / scale if scale >= 1 else 1.0
    center = scale * (np.arange(out_size)[:, None] + 0.5)
    lo = np.maximum((center - support + 0.5).astype(np.int64), 0)  # truncation, as torch's int64 cast
    hi = np.minimum((center + support + 0.5).astype(np.int64), in_size)
    j = lo + np.arange(int(np.ceil(2 * support)) + 1)[None, :]
    weights = np.where(j < hi, _cubic((j - center + 0.5) * inv), 0.0)
    total = weights.sum(axis=1, keepdims=True)
    weights = (weights / np.where(total == 0, 1.0, total)).astype(np.float32)
    return np.minimum(j, in_size - 1).astype(np.intp), weights


def _resample_rows(x: NDArray[np.float32], out_size: int) -> NDArray[np.float32]:
    """Resample axis 0 of ``x``; a fixed sequence of elementwise operations, so the result never depends on
    threads or BLAS (a matrix product's summation order does, which would break byte-identical resumes)."""
    index, weights = _aa_taps(x.shape[0], out_size)
    shape = (out_size,) + (1,) * (x.ndim - 1)
    out = x[index[:, 0]] * weights[:, 0].reshape(shape)
    for k in range(1, index.shape[1]):
        out += x[index[:, k]] * weights[:, k].reshape(shape)
    return out


def resize_bicubic_aa(image: NDArray[np.uint8], out_size: int) -> NDArray[np.uint8]:
    """A square ``(S, S, ...)`` uint8 image to ``out_size`` as torchvision's ``resize(..., BICUBIC, antialias=True)``
    on its float values, rounded (half to even) and clamped to uint8, as DP2 does (within 1 grey level)."""
    x = image.astype(np.float32).swapaxes(0, 1)  # columns first, as torch does
    x = _resample_rows(np.ascontiguousarray(x), out_size).swapaxes(0, 1)
    x = _resample_rows(np.ascontiguousarray(x), out_size)
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


#: the file, at a dataset's root, that records how its crops were cut
GEOMETRY_FILE = "crop_geometry.json"
#: FDF256's crop: ``expand_bbox_simple(box, 0.4)``, a side 1.4x the face box's longer side
FDF256_EXPAND = 1.4
KEYPOINTS_OUTSIDE = ("clamp", "nan")


@dataclass(frozen=True)
class CropGeometry:
    """How a dataset's crops are cut from the original photos; saved as ``crop_geometry.json`` at its root.

    The face box is rounded to whole pixels, squared and expanded by :func:`expand_square`
    (FDF256's ``expand_bbox_simple`` at the default ``expand`` 1.4), zero-padded outside the
    photo and resampled to ``size`` by :func:`crop` (DP2's ``cut_pad_resize(fdf_resize=True)``).
    Boxes and keypoints go into the crop frame as DP2's ``FaceDetection.get_crop`` puts them:
    the box truncated to whole crop pixels, keypoints as fractions of the side, clamped to
    [0, 1] (``keypoints_outside="clamp"``) or NaN when outside (``"nan"``).
    """

    expand: float = FDF256_EXPAND
    size: int = 256
    keypoints_outside: str = "clamp"

    def __post_init__(self):
        if self.expand < 1.0:
            raise ValueError("expand must be >= 1 (the crop must hold the whole face box)")
        if self.keypoints_outside not in KEYPOINTS_OUTSIDE:
            raise ValueError(f"keypoints_outside must be one of {KEYPOINTS_OUTSIDE}")

    def transform(self, original_box: NDArray) -> CropTransform:
        """The square of the photo a face with this original-photo box was cut from."""
        x0, y0, x1, _ = expand_square(whole_pixels(original_box), self.expand)
        return CropTransform(x0, y0, x1 - x0, self.size)

    def crop_box(self, t: CropTransform, original_box: NDArray) -> NDArray[np.int64]:
        """The face box in crop pixels, as ``get_crop``: ``int((box - square origin) * size / side)``."""
        box = whole_pixels(original_box).astype(np.float64) - (t.x0, t.y0, t.x0, t.y0)
        return np.trunc(box * (self.size / t.side)).astype(np.int64)

    def landmarks(self, t: CropTransform, keypoints: NDArray) -> NDArray[np.float32]:
        """Original-photo keypoints as fractions of the crop side, clamped or NaN outside it; NaN stays NaN."""
        points = (np.asarray(keypoints, dtype=np.float64) - (t.x0, t.y0)) / t.side
        if self.keypoints_outside == "clamp":
            return np.clip(points, 0.0, 1.0).astype(np.float32)
        points[((points < 0) | (points > 1)).any(axis=-1)] = np.nan
        return points.astype(np.float32)

    def to_json(self) -> dict:
        return {
            "box": "detector box rounded to whole pixels (half to even)",
            "square": "expand_bbox_simple(box, expand - 1) of DeepPrivacy2's box_utils_fdf.py",
            "expand": self.expand,
            "size": self.size,
            "padding": 0,
            "resample": "cut_pad_resize(fdf_resize=True): cv2 INTER_AREA if the part inside the photo has >= "
                        "size*size pixels, else bicubic with antialias (a=-0.5)",
            "crop_box": "trunc((box - square origin) * size / side)",
            "keypoints_outside": self.keypoints_outside,
        }

    @classmethod
    def from_json(cls, data: dict) -> "CropGeometry":
        return cls(expand=float(data["expand"]), size=int(data["size"]),
                   keypoints_outside=data.get("keypoints_outside", "clamp"))

    @classmethod
    def of_dataset(cls, root) -> "CropGeometry":
        """The geometry a dataset records; FDF256's when it records none (a published copy)."""
        import json
        from pathlib import Path

        path = Path(root) / GEOMETRY_FILE
        return cls.from_json(json.loads(path.read_text())) if path.is_file() else cls()


def recompute_crop(image: NDArray[np.uint8], original_box: NDArray,
                   geometry: CropGeometry = CropGeometry()) -> tuple[NDArray[np.uint8], CropTransform]:
    """A face's crop cut again from its original photo and its ``original_bounding_box``, as the build cut it.

    Returns the crop and its :class:`CropTransform` (``forward``/``inverse`` map points in and out).
    """
    t = geometry.transform(original_box)
    return crop(image, t), t


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
