"""Image statistics behind ``exposure`` and ``noise``, and why ``blur`` has none.

Both are measured with the face scaled so its box is ``QUALITY_SIDE`` px wide: the records' cloud API saw FFHQ's
128 px thumbnails, where faces are 57-77 px wide (their ``faceRectangle``), and the values then do not depend on
the size of the image they come from. Levels use the API's bands, which the records follow: exposure under < 0.25,
over > 0.75; noise low < 0.3 <= medium < 0.7 <= high.

* ``exposure``: mean luminance of the face box, mapped by ``EXPOSURE_FIT``, chosen by leave-one-out among face
  box, face outline, skin, whole image (means, medians, percentiles) and fitted for least absolute error on the
  labelled faces of ``tests/data/attributes``; ``benchmarks/attributes.py`` prints it in sample and left out,
  against a constant.
* ``noise``: Immerkaer's noise sigma over the face, / ``NOISE_SIGMA``: a measure of the image's own noise (our
  copies of the labelled faces were re-encoded and resized by others, so the records' noise is not in them).
* ``blur``: none. No sharpness statistic tried (Laplacian, Tenengrad, edge width, re-blur and high-frequency
  ratios, raw or contrast-normalised, at 32-256 px, on the face, its skin or its box) with a map that gets sharper
  as it should scores the faces left out better than a constant does (``benchmarks/attributes.py``), so a blur
  value would be made up: records say ``null`` and why.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import cv2
import numpy as np
from numpy.typing import NDArray

from .models.facemesh import face_oval

QUALITY_SIDE = 64
#: exposure value = clip(A + B * mean luminance in [0, 1]); least absolute error on the 17 labelled faces
EXPOSURE_FIT = (0.112, 1.090)
NOISE_SIGMA = 20.0  # value = Immerkaer sigma / NOISE_SIGMA
BLUR_NULL = ("no statistic of the face's pixels tracks the records' blur on faces left out (benchmarks/"
             "attributes.py: every sharpness map scores them worse than a constant), so none is given")
_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64)


def _level(value: float, low: float, high: float, names: tuple[str, str, str]) -> str:
    return names[0] if value < low else names[1] if value < high else names[2]


class FaceRegion:
    """A face's pixels for the image statistics: the image in grey, scaled so the face box is ``QUALITY_SIDE``
    px wide, with the box and the face itself (the face mesh's outline when known, else the box) as masks."""

    def __init__(self, image: NDArray[np.uint8], box: Sequence[float], mesh: Optional[NDArray] = None):
        x0, y0, x1, y1 = (float(v) for v in box)
        h, w = image.shape[:2]
        if min(x1, w) - max(x0, 0) < 2 or min(y1, h) - max(y0, 0) < 2:
            raise ValueError(f"face box {list(box)} is empty inside the {w}x{h} image")
        k = QUALITY_SIDE / (x1 - x0)
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        self.gray = cv2.resize(gray, None, fx=k, fy=k, interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_CUBIC
                               ).astype(np.float64)
        self.box = np.zeros(self.gray.shape, bool)
        self.box[max(0, round(y0 * k)):round(y1 * k), max(0, round(x0 * k)):round(x1 * k)] = True
        if mesh is None:
            self.face = self.box
        else:
            outline = cv2.convexHull((np.asarray(mesh)[list(face_oval()), :2] * k).astype(np.float32))
            face = np.zeros(self.gray.shape, np.uint8)
            cv2.fillConvexPoly(face, np.round(outline).astype(np.int32), 1)
            self.face = face.astype(bool) if face.sum() > 16 else self.box


def brightness(region: FaceRegion) -> float:
    """Mean luminance of the face box in [0, 1]: the statistic ``EXPOSURE_FIT`` maps onto exposure."""
    return float(region.gray[region.box].mean() / 255)


def exposure(region: FaceRegion) -> dict:
    value = round(float(np.clip(EXPOSURE_FIT[0] + EXPOSURE_FIT[1] * brightness(region), 0, 1)), 3)
    level = "underExposure" if value < 0.25 else "overExposure" if value > 0.75 else "goodExposure"
    return {"exposureLevel": level, "value": value}


def noise(region: FaceRegion) -> dict:
    response = np.abs(cv2.filter2D(region.gray, cv2.CV_64F, _IMMERKAER, borderType=cv2.BORDER_REFLECT))
    sigma = math.sqrt(math.pi / 2) * float(response[region.face].mean()) / 6
    value = round(float(np.clip(sigma / NOISE_SIGMA, 0, 1)), 3)
    return {"noiseLevel": _level(value, 0.3, 0.7, ("low", "medium", "high")), "value": value}


def image_quality(image: NDArray[np.uint8], box: Sequence[float], mesh: Optional[NDArray] = None) -> dict:
    """``exposure`` and ``noise`` of the face in ``box`` (``mesh``: its face mesh, when found)."""
    region = FaceRegion(image, box, mesh)
    return {"exposure": exposure(region), "noise": noise(region)}
