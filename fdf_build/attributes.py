"""Attributes: per-face JSON in the FFHQ-Features schema, computed offline.

Which fields come from where:

* ``faceRectangle``: the face box in the original photo (``original_bounding_box``).
* ``headPose`` (degrees): geometry of the nose and eyes, which every kept face has.
  ``roll`` is the eye line's angle in the image (positive = clockwise, the person's
  left eye lower); ``yaw`` models the nose tip as sitting 0.7 half-eye-distances in
  front of the eye plane, so its sideways offset from the eyes' midpoint is
  ``0.7 * tan(yaw)`` half-eye-distances (positive = the face turned toward the image's
  right, the person's left); ``pitch`` does the same vertically against a frontal
  nose-below-eyes ratio of 0.55 eye distances (positive = looking down). These are
  rough (+/- 10-15 degrees), honest estimates, not a head-pose network.
* ``blur``: variance of the Laplacian over the face box of the crop (sharp faces have
  strong edges), mapped to ``value = 1 - log10(1 + var) / 3`` in [0, 1]; low < 0.35 <= medium < 0.6 <= high.
* ``exposure``: mean luminance of the face box in [0, 1]; under < 0.25 <= good <= 0.75 < over.
* ``noise``: Immerkaer's fast noise-sigma estimate (a Laplacian-difference filter that
  cancels smooth image structure) on the face box, ``value = sigma / 20`` clipped to
  [0, 1]; low < 0.25 <= medium < 0.5 <= high.
* Model-based fields (smile, gender, age, emotion, glasses, facialHair, makeup, hair,
  occlusion, accessories): only from an ONNX model given with ``--attribute-model``
  (see :class:`OnnxAttributeModel`); without one they are left out, never guessed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
from numpy.typing import NDArray

from .writer import points_array

_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64)
NOSE_DEPTH = 0.7  # nose tip in front of the eye plane, in half eye-distances
NOSE_DROP = 0.55  # frontal nose-tip distance below the eye line, in eye distances


def _level(value: float, low: float, high: float, names: tuple[str, str, str]) -> str:
    return names[0] if value < low else names[1] if value < high else names[2]


def face_rectangle(box: list) -> dict:
    x0, y0, x1, y1 = box
    return {"top": int(round(y0)), "left": int(round(x0)), "width": int(round(x1 - x0)),
            "height": int(round(y1 - y0))}


def head_pose(keypoints: NDArray) -> Optional[dict]:
    """Pitch, roll, yaw in degrees from nose and eyes (``keypoints`` rows 0-2, any pixel frame); None if missing."""
    nose, left_eye, right_eye = (np.asarray(p, dtype=np.float64) for p in keypoints[:3])
    if np.isnan([nose, left_eye, right_eye]).any():
        return None
    axis = left_eye - right_eye  # from the person's right eye (image left) to their left eye
    distance = float(np.hypot(*axis))
    if distance < 1e-6:
        return None
    u = axis / distance
    v = np.array([-u[1], u[0]])  # perpendicular, pointing down the face
    offset = nose - (left_eye + right_eye) / 2
    roll = math.degrees(math.atan2(axis[1], axis[0]))
    yaw = math.degrees(math.atan((offset @ u) / (distance / 2) / NOSE_DEPTH))
    pitch = math.degrees(math.atan(((offset @ v) / distance - NOSE_DROP) / NOSE_DEPTH))
    return {"pitch": round(pitch, 1), "roll": round(roll, 1), "yaw": round(yaw, 1)}


def _face_gray(image: NDArray[np.uint8], box: NDArray) -> NDArray[np.float64]:
    h, w = image.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return gray[y0:y1, x0:x1].astype(np.float64)


def blur(gray: NDArray[np.float64]) -> dict:
    variance = float(cv2.Laplacian(gray, cv2.CV_64F).var())
    value = float(np.clip(1 - math.log10(1 + variance) / 3, 0, 1))
    return {"blurLevel": _level(value, 0.35, 0.6, ("low", "medium", "high")), "value": round(value, 3)}


def exposure(gray: NDArray[np.float64]) -> dict:
    value = float(gray.mean() / 255)
    level = "underExposure" if value < 0.25 else "overExposure" if value > 0.75 else "goodExposure"
    return {"exposureLevel": level, "value": round(value, 3)}


def noise(gray: NDArray[np.float64]) -> dict:
    h, w = gray.shape
    response = np.abs(cv2.filter2D(gray, cv2.CV_64F, _IMMERKAER, borderType=cv2.BORDER_REFLECT)[1:-1, 1:-1])
    sigma = math.sqrt(math.pi / 2) * response.sum() / (6 * max(1, (w - 2) * (h - 2)))
    value = float(np.clip(sigma / 20, 0, 1))
    return {"noiseLevel": _level(value, 0.25, 0.5, ("low", "medium", "high")), "value": round(value, 3)}


def face_attributes(image: NDArray[np.uint8], entry: dict, box_px: NDArray, landmarks: NDArray) -> dict:
    """The FFHQ-Features JSON for one face crop (``image`` RGB, ``box_px`` its face box in crop pixels)."""
    gray = _face_gray(image, box_px)
    attributes = {"blur": blur(gray), "exposure": exposure(gray), "noise": noise(gray)}
    original = entry.get("original_landmark")
    points = points_array(original, np.float64) if original else np.asarray(landmarks, dtype=np.float64)
    pose = head_pose(points)
    if pose is not None:
        attributes["headPose"] = pose
    record = {"faceAttributes": attributes}
    if entry.get("original_bounding_box"):
        record["faceRectangle"] = face_rectangle(entry["original_bounding_box"])
    return record


class OnnxAttributeModel:
    """A user's ONNX model for the model-based fields.

    Contract: one input, NCHW float32 RGB in [0, 1], resized to the input's H x W
    (224 when dynamic); outputs are named after the FFHQ-Features fields they give,
    each for batch 1: ``smile`` (1), ``age`` (1), ``gender`` (2: female, male),
    ``glasses`` (4: NoGlasses, ReadingGlasses, Sunglasses, SwimmingGoggles),
    ``emotion`` (8, in FFHQ's order), ``facialHair`` (3: moustache, beard, sideburns),
    ``makeup`` (2: eyeMakeup, lipMakeup probabilities). Outputs with other names are
    ignored; fields the model does not give are left out.
    """

    EMOTIONS = ("anger", "contempt", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")
    GLASSES = ("NoGlasses", "ReadingGlasses", "Sunglasses", "SwimmingGoggles")

    def __init__(self, path: Path):
        import onnxruntime as ort

        if not Path(path).is_file():
            raise FileNotFoundError(f"attribute model {path} not found")
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        shape = self.session.get_inputs()[0].shape
        self.size = tuple(d if isinstance(d, int) else 224 for d in shape[2:4])
        self.input = self.session.get_inputs()[0].name
        self.outputs = [o.name for o in self.session.get_outputs()]

    def __call__(self, image: NDArray[np.uint8]) -> dict:
        x = cv2.resize(image, (self.size[1], self.size[0]), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
        values = dict(zip(self.outputs, self.session.run(None, {self.input: x.transpose(2, 0, 1)[None]})))
        out = {}
        flat = {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in values.items()}
        if "smile" in flat:
            out["smile"] = round(float(flat["smile"][0]), 3)
        if "age" in flat:
            out["age"] = round(float(flat["age"][0]), 1)
        if "gender" in flat:
            out["gender"] = ("female", "male")[int(np.argmax(flat["gender"][:2]))]
        if "glasses" in flat:
            out["glasses"] = self.GLASSES[int(np.argmax(flat["glasses"][:4]))]
        if "emotion" in flat:
            out["emotion"] = {k: round(float(v), 3) for k, v in zip(self.EMOTIONS, flat["emotion"][:8])}
        if "facialHair" in flat:
            out["facialHair"] = {k: round(float(v), 3)
                                 for k, v in zip(("moustache", "beard", "sideburns"), flat["facialHair"][:3])}
        if "makeup" in flat:
            out["makeup"] = {k: bool(v >= 0.5) for k, v in zip(("eyeMakeup", "lipMakeup"), flat["makeup"][:2])}
        return out


def face_id(entry: dict, fallback: str) -> str:
    """A stable id (uuid5 of photo URL and face index), so re-running gives the same JSON."""
    import uuid

    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{entry.get('photo_url', fallback)}#{entry.get('face_index', 0)}"))


def annotate_split(split_dir: Path, *, model: Optional[OnnxAttributeModel] = None, progress=None) -> int:
    """Compute every face's attributes in one split and write them (``attributes/<n>.json`` and ``attributes.jsonl``)."""
    from .layout import load_array, load_metainfo, read_image
    from .writer import write_attributes

    split_dir = Path(split_dir)
    meta = load_metainfo(split_dir)
    boxes = load_array(split_dir, "bounding_box.npy")
    landmarks = load_array(split_dir, "landmarks.npy")
    records = []
    for n in range(len(meta)):
        image = read_image(split_dir, n)
        entry = meta[str(n)]
        record = {"faceId": face_id(entry, f"{split_dir.name}/{n}"),
                  **face_attributes(image, entry, boxes[n], landmarks[n] * image.shape[0])}
        if model is not None:
            record["faceAttributes"].update(model(image))
        records.append(record)
        if progress:
            progress("attributes", 1)
    write_attributes(split_dir, records)
    return len(records)
