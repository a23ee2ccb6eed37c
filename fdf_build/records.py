"""The record types that flow through every stage, and the fixed set of reasons a photo or face is skipped."""

from __future__ import annotations

import dataclasses
import enum
from collections import Counter
from dataclasses import dataclass, field
from typing import ClassVar, Optional

import numpy as np
from numpy.typing import NDArray

#: FDF keypoint order, torchvision's COCO order 0-6. "left" is the person's left.
KEYPOINT_NAMES = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
)


class SkipReason(str, enum.Enum):
    """Why a metadata line, photo or face did not make it into the dataset.

    A closed set, so summaries stay small and comparable between runs; the raw
    message of a failure goes into ``Skip.detail`` instead.
    """

    # selection (metadata and eligibility)
    MALFORMED = "malformed"
    VIDEO = "video"
    LICENSE_NOT_ALLOWED = "license_not_allowed"
    OPTED_OUT = "opted_out"
    BLOCKLISTED = "blocklisted"
    # fetching
    PHOTO_REMOVED = "photo_removed"
    HTTP_NOT_FOUND = "http_404"
    HTTP_CLIENT_ERROR = "http_4xx"
    HTTP_SERVER_ERROR = "http_5xx"
    HTTP_RATE_LIMITED = "http_429"
    HTTP_TIMEOUT = "http_timeout"
    CONNECTION_ERROR = "connection_error"
    #: a request that cannot succeed as made (redirect loop, invalid URL, undecodable content encoding)
    REQUEST_ERROR = "request_error"
    TOO_LARGE = "too_large"
    DECODE_ERROR = "decode_error"
    # detection and faces
    NO_FACE = "no_face"
    FACE_TOO_SMALL = "face_too_small"
    NO_MATCHED_PERSON = "no_matched_person"
    # anything else: an unexpected exception while handling this photo (a bug); the traceback is in the debug log
    INTERNAL_ERROR = "internal_error"


@dataclass(frozen=True, slots=True)
class Skip:
    """A per-sample failure returned (not raised) by a stage."""

    reason: SkipReason
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Photo:
    """One YFCC100M metadata line, typed and with its URL-encoded text fields decoded.

    ``line_number`` is YFCC100M's own line index (column 0 of the 25-column
    release), which FDF stores as ``yfcc100m_line_idx``. Dates are kept as the
    text the file has: some ``date_taken`` values are bogus (year 4501) and
    must survive untouched. ``date_uploaded`` is epoch seconds as text.
    """

    line_number: int
    photo_id: int
    photo_hash: str
    user_nsid: str
    user_nickname: str
    date_taken: str
    date_uploaded: str
    capture_device: str
    title: str
    description: str
    user_tags: tuple[str, ...]
    machine_tags: tuple[str, ...]
    longitude: str
    latitude: str
    accuracy: str
    page_url: str
    download_url: str
    license_name: str
    license_url: str
    server_id: str
    farm_id: str
    secret: str
    original_secret: str
    original_extension: str
    marker: int

    @property
    def is_video(self) -> bool:
        return self.marker == 1


@dataclass(frozen=True, slots=True)
class Malformed:
    """A metadata line that could not be parsed; counted and reported, never fatal.

    ``line_number`` is the 1-based line of the file, not YFCC's own index.
    """

    line_number: int
    reason: str


@dataclass(frozen=True)
class Face:
    """One detected face, in the coordinates of the original photo.

    ``box``: ``(4,) float32`` x0, y0, x1, y1 in original-photo pixels.
    ``keypoints``: ``(7, 2) float32`` in original-photo pixels, in
    :data:`KEYPOINT_NAMES` order; rows for keypoints no model found are NaN.
    ``keypoint_model`` names the model the keypoints came from; ``keypoint_scores``
    (``(7,) float32``, when the model gives them) its confidence in each point.
    """

    box: NDArray[np.float32]
    score: float
    keypoints: NDArray[np.float32]
    keypoint_model: str = ""
    keypoint_scores: Optional[NDArray[np.float32]] = None
    #: ``(68, 2) float32`` face-alignment landmarks in original-photo pixels, when asked for
    landmarks68: Optional[NDArray[np.float32]] = None

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])


@dataclass(frozen=True)
class FaceCrop:
    """A face cropped and resampled to the output size, with everything the writer needs.

    ``image``: ``(size, size, 3) uint8`` RGB.
    ``box``: ``(4,) int64`` face box in crop pixels, as ``bounding_box.npy`` holds it;
    ``landmarks``: ``(7, 2) float32`` keypoints as ``landmarks.npy`` holds them (fractions
    of the crop side, clamped or NaN outside as the build's geometry says);
    ``keypoints``: crop pixels, unclamped. ``face`` keeps the original-photo coordinates
    (its box in whole pixels, the one the crop was cut around).
    """

    photo: Photo
    face_index: int
    face: Face
    image: NDArray[np.uint8]
    box: NDArray[np.int64]
    keypoints: NDArray[np.float32]
    landmarks: NDArray[np.float32]
    #: the static image URL the crop was cut from (Flickr's, never a mirror's)
    download_url: str
    split: Optional[str] = None
    #: ``(68, 2)`` face-alignment landmarks in crop pixels, when the build asked for them
    landmarks68: Optional[NDArray[np.float32]] = None
    #: perceptual hashes (:mod:`fdf_build.dedup`) of the crop and of the photo it was cut from
    phash: str = ""
    photo_phash: str = ""

    @property
    def key(self) -> tuple[int, int]:
        """A stable sort key: output order never depends on which thread finished first."""
        return (self.photo.line_number, self.face_index)


@dataclass
class RunCounts:
    """What every run counts: photos and faces, by what happened to them; subclasses add their own fields.

    Round-trips through JSON: each Counter as a dict, largest first where ``RANKED``.
    """

    RANKED: ClassVar[tuple[str, ...]] = ()
    photos: Counter = field(default_factory=Counter)
    faces: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Counter):
                value = dict(value.most_common() if f.name in self.RANKED else value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict):
        counters = {f.name for f in dataclasses.fields(cls) if f.default_factory is Counter}
        return cls(**{k: Counter(v) if k in counters else v for k, v in data.items()})
