"""The face record: one typed entry of ``fdf_metainfo.json``, in FDF's published form or ours.

FDF's README ("Metainfo", repo hukkelas/FDF) defines an entry as::

    author, bounding_box, category, date_crawled, date_taken, date_uploaded, landmark,
    license, license_url, original_bounding_box, original_landmark, photo_title,
    photo_url, yfcc100m_line_idx

plus ``user_nsid``, which FDF's own ``search_username.py`` reads. Their value forms:
``category`` is ``"training"`` or ``"validation"``; ``date_taken`` YFCC's text
(``"2010-01-16 21:47:59.0"``); ``date_uploaded`` a date (``"2010-01-16"``);
``date_crawled`` FDF's unpadded ``"2019-3-6"``; ``photo_url`` the Flickr photo page;
``yfcc100m_line_idx`` YFCC's line index as a string; ``bounding_box`` and ``landmark``
fractions of the crop side; ``original_*`` pixels of the original photo.

Builds of this project write all of those and, beside them under their own names,
what FDF does not record: ``download_url`` (the static image URL the crop was cut
from), ``photo_id``, ``face_index``, ``face_score``, ``detector``, ``keypoint_model``,
``keypoint_scores``, ``keypoints_missing``, ``phash`` and ``photo_phash`` (perceptual
hashes of the crop and its photo, :mod:`fdf_build.dedup`) and, with ``--landmarks``,
``landmarks68`` / ``landmark68``. Keys neither form knows (a later tool's) are kept in ``extra`` and
written back unchanged.

Usage::

    records = read_metainfo("data/fdf256/train")          # {"0": FaceRecord, ...}
    r = records["0"]
    r.photo_id, r.user_nsid, r.photo_url, r.download_url  # photo_id parsed from the URL if absent
    r.landmark_array()                                    # (7, 2) float32, NaN where null
    FaceRecord.from_json("0", entry, split="train").to_json() == {...}
    FaceRecord.from_crop(face_crop, detector=..., crawl_date=...)  # what a build writes

``attribution_row`` is a photo's row of the per-photo credit file.

Reading tolerates missing keys (published copies differ from one another) and older
builds of this project (``category`` "face", ``photo_url`` the static URL beside a
``page_url``, epoch-seconds ``date_uploaded``, integer ``yfcc100m_line_idx``).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Union

from ..flickr import is_page_url, page_url, photo_id_from_url
# METAINFO and entry_photo_id are imported from here too (the split writer, the search index)
from .loaders import METAINFO, entry_photo_id, int_or_none, load_metainfo, metainfo_path  # noqa: F401

if TYPE_CHECKING:
    import numpy as np  # imported where arrays are made: search reads records and must start without numpy
    from numpy.typing import NDArray

    from ..records import Face, FaceCrop

#: FDF's ``category`` per split directory, and back.
CATEGORIES = {"train": "training", "val": "validation"}
SPLIT_OF_CATEGORY = {v: k for k, v in CATEGORIES.items()}

Point = Optional[tuple[float, float]]

def upload_date(date_uploaded: str) -> str:
    """YFCC's ``date_uploaded`` (epoch seconds as text) as FDF writes it, a UTC date; other text unchanged."""
    text = str(date_uploaded).strip()
    if not text.isdigit():
        return text
    try:
        return _dt.datetime.fromtimestamp(int(text), _dt.timezone.utc).date().isoformat()
    except (OverflowError, OSError, ValueError):
        return text


def crawl_date_form(date: str) -> str:
    """An ISO date (``2019-03-06``) in FDF's unpadded form (``2019-3-6``); other text unchanged."""
    m = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})", str(date).strip())
    return f"{int(m.group(1))}-{int(m.group(2))}-{int(m.group(3))}" if m else str(date)


def _floats(values, ndigits: Optional[int] = None) -> Optional[tuple[float, ...]]:
    if values is None:
        return None
    out = tuple(float(v) for v in values)
    return out if ndigits is None else tuple(round(v, ndigits) for v in out)


def _points(values) -> Optional[tuple[Point, ...]]:
    """JSON point lists (``[x, y]`` or ``null``; ``(N, 2)`` arrays with NaN rows) as tuples, None for null."""
    if values is None:
        return None
    out = []
    for p in values:
        if p is None or len(p) < 2 or p[0] is None or p[1] is None or math.isnan(float(p[0])) or math.isnan(float(p[1])):
            out.append(None)
        else:
            out.append((float(p[0]), float(p[1])))
    return tuple(out)


def points_array(points: Optional[tuple[Point, ...]], dtype=None, n: int = 7) -> np.ndarray:
    """``(N, 2)`` array of a record's points (``dtype`` default float32), NaN where a point is ``null`` (all NaN
    when absent)."""
    import numpy as np

    dtype = dtype or np.float32
    if points is None:
        return np.full((n, 2), np.nan, dtype=dtype)
    return np.array([[np.nan, np.nan] if p is None else p for p in points], dtype=dtype).reshape(-1, 2)


def rounded_points(points: np.ndarray, ndigits: int = 6) -> tuple[Point, ...]:
    """``(N, 2)`` array points as the metainfo stores them: rounded, ``None`` where a point is NaN."""
    import numpy as np

    return tuple(None if np.isnan(p).any() else (round(float(p[0]), ndigits), round(float(p[1]), ndigits))
                 for p in points)


def _points_json(points: Optional[tuple[Point, ...]]) -> Optional[list]:
    return None if points is None else [None if p is None else [p[0], p[1]] for p in points]


@dataclass(frozen=True)
class FaceRecord:
    """One face of a dataset: FDF's fields, then ours (``None``/empty when a copy lacks them).

    ``image`` is the entry's key in ``fdf_metainfo.json`` (the image number), not a field of the entry.
    Points are tuples ``(x, y)`` or ``None``; :meth:`landmark_array` and friends give numpy arrays.
    Build a changed copy with :func:`dataclasses.replace`.
    """

    # FDF's keys
    author: str = ""
    bounding_box: Optional[tuple[float, ...]] = None
    category: str = ""
    date_crawled: str = ""
    date_taken: str = ""
    date_uploaded: str = ""
    landmark: Optional[tuple[Point, ...]] = None
    license: str = ""
    license_url: str = ""
    original_bounding_box: Optional[tuple[float, ...]] = None
    original_landmark: Optional[tuple[Point, ...]] = None
    photo_title: str = ""
    photo_url: str = ""
    yfcc100m_line_idx: Optional[int] = None
    user_nsid: str = ""
    # ours
    image: Optional[int] = None
    photo_id: Optional[int] = None
    download_url: str = ""
    face_index: Optional[int] = None
    face_score: Optional[float] = None
    detector: str = ""
    keypoint_model: str = ""
    keypoint_scores: Optional[tuple[Optional[float], ...]] = None
    keypoints_missing: Optional[tuple[str, ...]] = None
    landmarks68: Optional[tuple[Point, ...]] = None
    landmark68: Optional[tuple[Point, ...]] = None
    phash: str = ""
    photo_phash: str = ""
    #: keys of the entry that neither FDF nor this module knows, kept verbatim
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self):
        if self.photo_id is None:
            pid = photo_id_from_url(self.photo_url) or photo_id_from_url(self.download_url)
            if pid is not None:
                object.__setattr__(self, "photo_id", pid)

    @property
    def split(self) -> Optional[str]:
        """``train`` or ``val`` from ``category``; None when the record has no FDF category."""
        return SPLIT_OF_CATEGORY.get(self.category)

    def landmark_array(self) -> np.ndarray:
        """``(7, 2) float32`` keypoints in [0, 1] of the crop, NaN where null."""
        return points_array(self.landmark)

    @classmethod
    def from_crop(cls, c: FaceCrop, *, detector: str, crawl_date: str) -> "FaceRecord":
        """The record of a face the build just cut (its ``category`` is set when the merge picks its split).

        Crop-frame values (``bounding_box``, ``landmark``) are fractions of the crop
        side, as ``bounding_box.npy`` / ``landmarks.npy`` hold them; ``original_*`` are
        pixels of the original photo, unclamped. A keypoint no model found is ``null``
        in both and named in ``keypoints_missing``.
        """
        import numpy as np

        from ..records import KEYPOINT_NAMES

        size = c.image.shape[0]
        p = c.photo
        scores = c.face.keypoint_scores
        landmarks68 = {}
        if c.landmarks68 is not None:
            in_crop = c.landmarks68.copy()
            in_crop[((in_crop < 0) | (in_crop > size)).any(axis=1)] = np.nan  # crop frame: only points inside it
            landmarks68 = {"landmarks68": rounded_points(c.face.landmarks68, 2),
                           "landmark68": rounded_points(in_crop / size)}
        return cls(
            author=p.user_nickname,
            bounding_box=tuple(round(float(v) / size, 6) for v in c.box),
            date_crawled=crawl_date_form(crawl_date),
            date_taken=p.date_taken,
            date_uploaded=upload_date(p.date_uploaded),
            landmark=rounded_points(c.landmarks),
            license=p.license_name,
            license_url=p.license_url,
            original_bounding_box=tuple(round(float(v), 2) for v in c.face.box),
            original_landmark=rounded_points(c.face.keypoints, 2),
            photo_title=p.title,
            photo_url=p.page_url or page_url(p.user_nsid, p.photo_id),
            yfcc100m_line_idx=p.line_number,
            user_nsid=p.user_nsid,
            photo_id=p.photo_id,
            download_url=c.download_url,
            face_index=c.face_index,
            face_score=c.face.score,
            detector=detector,
            keypoint_model=c.face.keypoint_model,
            keypoint_scores=None if scores is None else tuple(
                None if np.isnan(v) else round(float(v), 4) for v in scores),
            keypoints_missing=tuple(n for n, row in zip(KEYPOINT_NAMES, c.face.keypoints) if np.isnan(row).any()),
            phash=c.phash,
            photo_phash=c.photo_phash,
            **landmarks68,
        )

    @classmethod
    def from_json(cls, key: Optional[Union[str, int]], data: Mapping[str, Any], *,
                  split: Optional[str] = None) -> "FaceRecord":
        """Read one entry (``key`` is its image number, or None for an entry not yet numbered).

        ``split`` (``train``/``val``) supplies ``category`` when the entry has no FDF category
        (older builds of this project wrote ``"face"``).
        """
        d = dict(data)
        known = {f.name for f in dataclasses.fields(cls)} | {"page_url"}
        photo_url, download_url = str(d.get("photo_url") or ""), str(d.get("download_url") or "")
        page = str(d.get("page_url") or "")
        if photo_url and not is_page_url(photo_url):
            # a static image URL under FDF's key (older builds; some copies): the page goes under photo_url
            download_url = download_url or photo_url
            photo_url = page
        photo_url = photo_url or page
        photo_id = entry_photo_id({"photo_url": photo_url, "download_url": download_url, "photo_id": d.get("photo_id")})
        if not photo_url and photo_id is not None and d.get("user_nsid"):
            photo_url = page_url(d["user_nsid"], photo_id)
        category = str(d.get("category") or "")
        if category not in SPLIT_OF_CATEGORY:
            category = CATEGORIES.get(split, "") if split else ""
        scores = d.get("keypoint_scores")
        missing = d.get("keypoints_missing")
        return cls(
            author=str(d.get("author") or ""),
            bounding_box=_floats(d.get("bounding_box")),
            category=category,
            date_crawled=str(d.get("date_crawled") or ""),
            date_taken=str(d.get("date_taken") or ""),
            date_uploaded=upload_date(d.get("date_uploaded") or ""),
            landmark=_points(d.get("landmark")),
            license=str(d.get("license") or ""),
            license_url=str(d.get("license_url") or ""),
            original_bounding_box=_floats(d.get("original_bounding_box")),
            original_landmark=_points(d.get("original_landmark")),
            photo_title=str(d.get("photo_title") or ""),
            photo_url=photo_url,
            yfcc100m_line_idx=int_or_none(d.get("yfcc100m_line_idx")),
            user_nsid=str(d.get("user_nsid") or ""),
            image=int_or_none(key),
            photo_id=photo_id,
            download_url=download_url,
            face_index=int_or_none(d.get("face_index")),
            face_score=None if d.get("face_score") is None else float(d["face_score"]),
            detector=str(d.get("detector") or ""),
            keypoint_model=str(d.get("keypoint_model") or ""),
            keypoint_scores=None if scores is None else tuple(None if s is None else float(s) for s in scores),
            keypoints_missing=None if missing is None else tuple(str(m) for m in missing),
            landmarks68=_points(d.get("landmarks68")),
            landmark68=_points(d.get("landmark68")),
            phash=str(d.get("phash") or ""),
            photo_phash=str(d.get("photo_phash") or ""),
            extra={k: v for k, v in d.items() if k not in known},
        )

    def to_json(self) -> dict:
        """The entry as written: FDF's keys in FDF's value forms, then ours; absent extras are left out."""
        out = {
            "author": self.author,
            "bounding_box": None if self.bounding_box is None else list(self.bounding_box),
            "category": self.category,
            "date_crawled": self.date_crawled,
            "date_taken": self.date_taken,
            "date_uploaded": self.date_uploaded,
            "landmark": _points_json(self.landmark),
            "license": self.license,
            "license_url": self.license_url,
            "original_bounding_box": None if self.original_bounding_box is None else list(self.original_bounding_box),
            "original_landmark": _points_json(self.original_landmark),
            "photo_title": self.photo_title,
            "photo_url": self.photo_url,
            "yfcc100m_line_idx": None if self.yfcc100m_line_idx is None else str(self.yfcc100m_line_idx),
            "user_nsid": self.user_nsid,
        }
        ours = {
            "photo_id": self.photo_id,
            "download_url": self.download_url or None,
            "face_index": self.face_index,
            "face_score": self.face_score,
            "detector": self.detector or None,
            "keypoint_model": self.keypoint_model or None,
            "keypoint_scores": None if self.keypoint_scores is None else list(self.keypoint_scores),
            "keypoints_missing": None if self.keypoints_missing is None else list(self.keypoints_missing),
            "landmarks68": _points_json(self.landmarks68),
            "landmark68": _points_json(self.landmark68),
            "phash": self.phash or None,
            "photo_phash": self.photo_phash or None,
        }
        out.update({k: v for k, v in ours.items() if v is not None})
        out.update({k: v for k, v in self.extra.items() if k not in out})
        return out


def read_metainfo(path: Union[str, Path]) -> dict[str, FaceRecord]:
    """All records of one ``fdf_metainfo.json`` (or of the split directory holding it), keyed as in the file, each
    entry checked first (:func:`fdf_build.dataset.loaders.load_metainfo`: a DatasetError names the file and the
    problem). The split directory's name (``train``/``val``) supplies ``category`` where the file lacks it.
    """
    path = metainfo_path(path)
    split = path.parent.name if path.parent.name in CATEGORIES else None
    return {key: FaceRecord.from_json(key, entry, split=split) for key, entry in load_metainfo(path).items()}


#: attribution.csv's columns: one row per photo, as CC BY asks (who made it, its title, where it is, its license)
ATTRIBUTION_FIELDS = ("photo_id", "author", "user_nsid", "title", "photo_url", "download_url", "license",
                      "license_url", "images")


def attribution_key(r: FaceRecord):
    """The photo a face is credited under in ``attribution.csv``: its id, else its page URL."""
    return r.photo_id if r.photo_id is not None else r.photo_url


def attribution_row(r: FaceRecord) -> dict:
    """``attribution.csv``'s row for the photo of ``r``, its first face, without the ``images`` column."""
    return {"photo_id": r.photo_id, "author": r.author, "user_nsid": r.user_nsid, "title": r.photo_title,
            "photo_url": r.photo_url, "download_url": r.download_url, "license": r.license,
            "license_url": r.license_url}


def detection_record(image_name: str, image: NDArray[np.uint8], faces: list[Face]) -> dict:
    """``fdf-build detect --json``'s line for one image: all faces, original pixels, null for missing keypoints."""
    return {
        "image": image_name,
        "width": int(image.shape[1]),
        "height": int(image.shape[0]),
        "faces": [
            {
                "box": [round(float(v), 2) for v in f.box],
                "score": f.score,
                "keypoints": rounded_points(f.keypoints, 2),
                **({} if f.keypoint_scores is None else {
                    "keypoint_scores": [round(float(v), 4) for v in f.keypoint_scores]}),
                "keypoint_model": f.keypoint_model,
                **({"landmarks68": rounded_points(f.landmarks68, 2)} if f.landmarks68 is not None else {}),
            }
            for f in faces
        ],
    }
