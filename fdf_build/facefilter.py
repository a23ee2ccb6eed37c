"""Face filters: FDF256's two reasons a detected face is not kept, as stages that count what they drop.

* **size**: a face narrower or shorter than ``min_face`` px in the original photo
  (FDF256: 64) is dropped, since upsampling it to 256 px would invent detail;
* **unmatched**: a face no person's keypoints matched (see :mod:`fdf_build.models.pose`)
  is dropped under ``unmatched="drop"`` (FDF256's rule, the default: every face then has
  7 keypoints from a pose model) or kept with the detector's nose and eyes under ``"keep"``.

Each returns the faces to go on with, or a :class:`~fdf_build.records.Skip` when none is
left; ``stats`` gets ``found``/``too_small`` and ``unmatched`` counts.
"""

from __future__ import annotations

from collections import Counter
from typing import Union

from .records import Face, Skip, SkipReason
from .sources.filters import face_large_enough


def large_faces(faces: list[Face], min_face: int, stats: Counter) -> Union[list[Face], Skip]:
    large = [f for f in faces if face_large_enough(f, min_face)]
    stats.update(found=len(faces), too_small=len(faces) - len(large))
    if not large:
        return Skip(SkipReason.FACE_TOO_SMALL, f"{len(faces)} face(s), all under {min_face} px")
    return large


def is_matched(face: Face, detector_name: str) -> bool:
    """A keypoint stage replaces a matched face's keypoints (and names its model); unmatched ones keep the detector's."""
    return face.keypoint_model != detector_name


def matched_faces(faces: list[Face], policy: str, detector_name: str, stats: Counter) -> Union[list[Face], Skip]:
    if policy == "keep":
        return faces
    matched = [f for f in faces if is_matched(f, detector_name)]
    stats.update(unmatched=len(faces) - len(matched))
    if not matched:
        return Skip(SkipReason.NO_MATCHED_PERSON, f"{len(faces)} face(s), none matched to a person")
    return matched
