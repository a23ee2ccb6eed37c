"""Keypoint matching: the 7 FDF keypoints (nose, eyes, ears, shoulders) for each detected face.

The default model is MediaPipe's BlazePose full (``pose_landmark_full.tflite``
inside the mediapipe 0.10.21 wheel). It finds one person per call, so it runs
on a region around each face (4 face-widths wide, from one face-height above
to 3.5 below: head and shoulders). Its landmarks 0, 2, 5, 7, 8, 11, 12 are
COCO's keypoints 0-6.

A person is matched to a face as FDF256 did with keypoint R-CNN: its nose and
both eyes must fall inside the face box. In crowds the model sometimes picks
a neighbour; that person fails the rule and the face keeps the detector's own
nose and eyes, with ears and shoulders recorded as missing (NaN), never guessed.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Optional, Protocol

import numpy as np
from numpy.typing import NDArray

from .records import Face

_MEDIAPIPE_INDEX = (0, 2, 5, 7, 8, 11, 12)
#: a bundled photo of a person: running it once makes a graph say all it says when it first finds a pose
_WARM_UP_PHOTO = Path(__file__).parent / "demo_data" / "codait_luciano.jpg"
log = logging.getLogger(__name__)


@contextmanager
def native_stderr_to_log():
    """Route what native code writes to file descriptor 2 into this module's DEBUG log.

    MediaPipe's C++ logging ignores every setting (GLOG_minloglevel, TF_CPP_MIN_LOG_LEVEL) and prints
    warnings meant for its developers under the progress bars. Only for single-threaded moments:
    anything another thread writes to stderr meanwhile lands in the log too.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            for line in sink.read().decode(errors="replace").splitlines():
                log.debug("mediapipe: %s", line)


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


class MediaPipePose:
    """BlazePose full; safe to call from many threads.

    A MediaPipe graph is not thread-safe, so graphs are kept in a pool and each
    call borrows one: there are never more graphs than concurrent calls.

    A landmark whose visibility is under ``visibility`` (occluded or outside the
    region, where BlazePose extrapolates) is recorded as missing.

    ``graphs`` are made up front, while nothing else runs, each run once on a
    bundled photo with its C++ chatter sent to the DEBUG log (``-v`` shows it);
    a graph made later, when more calls than that overlap, prints its own.
    """

    name = "mediapipe-pose-full (mediapipe 0.10.21)"

    def __init__(self, *, visibility: float = 0.5, graphs: int = 1):
        import cv2

        self.visibility = visibility
        self._idle: queue.SimpleQueue = queue.SimpleQueue()
        photo = cv2.cvtColor(cv2.imread(str(_WARM_UP_PHOTO)), cv2.COLOR_BGR2RGB)
        with native_stderr_to_log():
            for pose in [self._new_graph() for _ in range(graphs)]:
                pose.process(photo)
                self._idle.put(pose)

    @staticmethod
    def _new_graph():
        import mediapipe as mp

        return mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1, min_detection_confidence=0.3)

    def _process(self, region: NDArray[np.uint8]):
        try:
            pose = self._idle.get_nowait()
        except queue.Empty:
            pose = self._new_graph()
        try:
            return pose.process(region)
        finally:
            self._idle.put(pose)

    def person(self, image: NDArray[np.uint8], box: NDArray) -> Optional[NDArray[np.float32]]:
        """The 7 keypoints of the person in ``box``'s region, in image pixels (NaN where not visible)."""
        rx0, ry0, rx1, ry1 = person_region(box, image.shape[:2])
        if rx1 - rx0 < 2 or ry1 - ry0 < 2:
            return None
        region = np.ascontiguousarray(image[ry0:ry1, rx0:rx1])
        result = self._process(region)
        if result.pose_landmarks is None:
            return None
        landmarks = result.pose_landmarks.landmark
        points = np.full((7, 2), np.nan, dtype=np.float32)
        for k, i in enumerate(_MEDIAPIPE_INDEX):
            lm = landmarks[i]
            x, y = rx0 + lm.x * (rx1 - rx0), ry0 + lm.y * (ry1 - ry0)
            if lm.visibility >= self.visibility and rx0 <= x < rx1 and ry0 <= y < ry1:
                points[k] = (x, y)
        return points

    def __call__(self, image: NDArray[np.uint8], faces: list[Face]) -> list[Face]:
        out = []
        for face in faces:
            points = self.person(image, face.box)
            if points is not None and nose_and_eyes_inside(points, face.box):
                face = Face(box=face.box, score=face.score, keypoints=points, keypoint_model=self.name)
            out.append(face)
        return out


def make_keypoint_model(name: str, *, visibility: float, graphs: int = 1) -> Optional[KeypointModel]:
    """``none`` keeps the detector's own nose and eyes only."""
    if name == "mediapipe":
        return MediaPipePose(visibility=visibility, graphs=graphs)
    if name == "none":
        return None
    raise ValueError(f"unknown keypoint model {name!r}")
