"""FFHQ-Features' record, as its clients read it: the schema, its writer's order, and a reader of json folders.

FFHQ-Features (DCGM/ffhq-features-dataset) is one ``json/<name>.json`` per image, each a **list** of face records
(``[]`` when the image has no face). A record is ``faceId``, ``faceRectangle`` (top, left, width, height in that
image's pixels) and ``faceAttributes`` with the same 14 keys, in the same order, in every record; ``emotion``
always has its 8 keys. Clients index ``json[0]["faceAttributes"]["hair"]["bald"]``, iterate ``.items()`` of
``facialHair``/``emotion``/``makeup``/``occlusion`` as fixed CSV columns, and compare ``glasses`` to its names, so
every key is always there. Where no model gives a value, ours is ``null`` and the record's ``models`` (our
addition; clients ignore it) says why; ``models`` also names the model behind every value.

:class:`FaceFeatures` is a record read back, ours or the published one, with typed fields.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

from .layout import DatasetError

#: faceAttributes' keys in the published files' order
ATTRIBUTES = ("smile", "headPose", "gender", "age", "facialHair", "glasses", "emotion", "blur", "exposure", "noise",
              "makeup", "accessories", "occlusion", "hair")
EMOTIONS = ("anger", "contempt", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")
GLASSES = ("NoGlasses", "ReadingGlasses", "Sunglasses", "SwimmingGoggles")
HAIR_COLORS = ("brown", "blond", "black", "red", "gray", "other")
ACCESSORIES = ("headwear", "glasses", "mask")
FACIAL_HAIR = ("moustache", "beard", "sideburns")
MAKEUP = ("eyeMakeup", "lipMakeup")
OCCLUSION = ("foreheadOccluded", "eyeOccluded", "mouthOccluded")
HEAD_POSE = ("pitch", "roll", "yaw")


def face_attributes(values: dict, reasons: dict) -> tuple[dict, dict]:
    """``values`` (attribute -> value, any order, some missing) as FFHQ's 14 keys in order, a missing one ``None``;
    and ``models``: ``reasons`` for each key, in the same order (a missing value without a reason is a bug)."""
    attributes = {key: values.get(key) for key in ATTRIBUTES}
    unexplained = [key for key in ATTRIBUTES if attributes[key] is None and not reasons.get(key)]
    if unexplained:
        raise ValueError(f"attributes {unexplained} are null without a reason")
    return attributes, {key: reasons[key] for key in ATTRIBUTES if key in reasons}


def rounded_distribution(probabilities: dict[str, float], digits: int = 3) -> dict[str, float]:
    """Probabilities rounded to ``digits`` decimals so that they still sum to exactly 1 (largest remainder), as
    FFHQ's emotion values do."""
    unit = 10 ** digits
    total = sum(probabilities.values())
    scaled = {k: v / total * unit for k, v in probabilities.items()}
    floors = {k: int(v) for k, v in scaled.items()}
    for k in sorted(scaled, key=lambda k: floors[k] - scaled[k])[:unit - sum(floors.values())]:
        floors[k] += 1
    return {k: floors[k] / unit for k in probabilities}


def face_record(annotation: dict, *, face_id: Optional[str], rectangle: Optional[dict]) -> dict:
    """One record in FFHQ's key order: ``faceId``, ``faceRectangle``, ``faceAttributes``, then our ``models``.

    ``annotation`` is ``{"faceAttributes": ..., "models": ...}``; ``faceId``/``faceRectangle`` are left out when
    unknown (a face without a dataset key has no id yet)."""
    out = {}
    if face_id is not None:
        out["faceId"] = face_id
    if rectangle is not None:
        out["faceRectangle"] = rectangle
    out["faceAttributes"] = annotation["faceAttributes"]
    out["models"] = annotation["models"]
    return out


def face_rectangle(box) -> dict:
    """FFHQ's ``faceRectangle`` (whole pixels) from a box x0, y0, x1, y1."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return {"top": int(round(y0)), "left": int(round(x0)), "width": int(round(x1 - x0)),
            "height": int(round(y1 - y0))}


@dataclass(frozen=True)
class Level:
    """``blur``, ``exposure`` or ``noise``: a value in [0, 1] and its level's name."""

    level: str
    value: float


@dataclass(frozen=True)
class Scored:
    """A hair colour (FFHQ's ``color``) or an accessory (its ``type``) with the model's confidence."""

    name: str
    confidence: float


@dataclass(frozen=True)
class Hair:
    bald: Optional[float]
    invisible: Optional[bool]
    hair_color: tuple[Scored, ...]


@dataclass(frozen=True)
class FaceFeatures:
    """One face record read back; a field is ``None`` where the record has ``null`` (``models`` says why)."""

    face_id: Optional[str]
    rectangle: Optional[dict]
    smile: Optional[float]
    head_pose: Optional[dict[str, float]]
    gender: Optional[str]
    age: Optional[float]
    facial_hair: Optional[dict[str, Optional[float]]]
    glasses: Optional[str]
    emotion: Optional[dict[str, float]]
    blur: Optional[Level]
    exposure: Optional[Level]
    noise: Optional[Level]
    makeup: Optional[dict[str, Optional[bool]]]
    accessories: Optional[tuple[Scored, ...]]
    occlusion: Optional[dict[str, bool]]
    hair: Optional[Hair]
    models: dict[str, str]

    @classmethod
    def from_json(cls, record: Any, where: str = "record") -> "FaceFeatures":
        """A record as published or as we write it; a record that is not FFHQ-Features' shape is a
        :class:`DatasetError` naming ``where``."""
        try:
            a = record["faceAttributes"]
            missing = [k for k in ATTRIBUTES if k not in a]
            if missing:
                raise KeyError(", ".join(missing))

            def level(key: str) -> Optional[Level]:
                v = a[key]
                return None if v is None else Level(str(v[f"{key}Level"]), float(v["value"]))

            def fixed(key: str, names: tuple[str, ...], kind) -> Optional[dict]:
                v = a[key]
                return None if v is None else {name: None if v[name] is None else kind(v[name]) for name in names}

            hair = a["hair"]
            return cls(
                face_id=record.get("faceId"), rectangle=record.get("faceRectangle"),
                smile=_number(a["smile"]), head_pose=fixed("headPose", HEAD_POSE, float),
                gender=a["gender"], age=_number(a["age"]), facial_hair=fixed("facialHair", FACIAL_HAIR, float),
                glasses=a["glasses"], emotion=fixed("emotion", EMOTIONS, float),
                blur=level("blur"), exposure=level("exposure"), noise=level("noise"),
                makeup=fixed("makeup", MAKEUP, bool),
                accessories=None if a["accessories"] is None else tuple(
                    Scored(str(x["type"]), float(x["confidence"])) for x in a["accessories"]),
                occlusion=fixed("occlusion", OCCLUSION, bool),
                hair=None if hair is None else Hair(_number(hair["bald"]), hair["invisible"], tuple(
                    Scored(str(c["color"]), float(c["confidence"])) for c in hair["hairColor"] or ())),
                models=dict(record.get("models") or {}))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise DatasetError(f"{where}: not an FFHQ-Features face record (missing or malformed {e})") from None


def _number(v) -> Optional[float]:
    return None if v is None else float(v)


def read_features_file(path: Path) -> list[FaceFeatures]:
    """One image's faces (``[]``: no face), from ``json/<name>.json``."""
    path = Path(path)
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path}: not readable as JSON ({e})") from None
    if not isinstance(records, list):
        raise DatasetError(f"{path}: an FFHQ-Features file holds a list of faces, not a JSON {type(records).__name__}")
    return [FaceFeatures.from_json(r, f"{path} face {i}") for i, r in enumerate(records)]


def read_features(folder: Path) -> Iterator[tuple[str, list[FaceFeatures]]]:
    """(name, faces) for each ``<name>.json`` in ``folder`` (FFHQ-Features' ``json/`` or ``fdf-build
    features``' output), in name order, read one file at a time."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no such folder")
    for path in sorted(folder.glob("*.json")):
        yield path.stem, read_features_file(path)
