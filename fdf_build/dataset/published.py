"""What a published dataset says about its faces: enough to fetch each photo once and cut its faces again.

A metadata-only dataset (``fdf-build pack --metadata-only``) keeps, per face, its photo (static URL or
YFCC100M line), its box in the original photo and its image's md5, and at its root the crop geometry
(:data:`GEOMETRY`); :mod:`fdf_build.rehydrate` reads them through this module.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np

from ..geometry import CropGeometry, recompute_crop
from ..records import Photo
from ..sources import metadata
from ..errors import DatasetError
from .layout import IMAGE_MD5S, WORK_DIR, split_dirs
from .loaders import BUILD_STATE, load_json, read_build_state
from .metainfo import FaceRecord, read_metainfo

#: The crop geometry a dataset was cut with, at its root (packed into metainfo.zip).
GEOMETRY = "crop_geometry.json"


class RehydrateError(DatasetError):
    """A dataset that cannot be rehydrated as it is (no geometry, no way to find a photo): one line for the user."""


@dataclass(frozen=True)
class Geometry:
    """How a dataset's crops were cut from the fetched photos: the only place rehydration learns it.

    ``flickr_size`` is the Flickr size the build fetched (None: YFCC's 500 px
    download URL), needed only to rebuild a photo's URL from its YFCC line.
    """

    expand: float
    size: int
    flickr_size: Optional[str] = None

    def recut(self, image: np.ndarray, box) -> np.ndarray:
        """The crop of ``box`` (original-photo pixels) exactly as the build cut it."""
        return recompute_crop(image, np.asarray(box, dtype=np.float64), CropGeometry(self.expand, self.size))[0]


def _saved_build_config(dataset: Path) -> Optional[dict]:
    state = read_build_state(Path(dataset) / WORK_DIR)
    return None if state is None else state["config"]


def geometry_record(dataset: Path) -> bytes:
    """The dataset's crop geometry as JSON bytes, for packing."""
    return (json.dumps(dataclasses.asdict(load_geometry(dataset)), indent=2, sort_keys=True) + "\n").encode()


def load_geometry(dataset: Path) -> Geometry:
    dataset = Path(dataset)
    try:
        if (dataset / GEOMETRY).is_file():
            data = load_json(dataset / GEOMETRY, "a crop geometry")  # a build's CropGeometry, or a pack's record
            return Geometry(expand=float(data["expand"]), size=int(data["size"]), flickr_size=data.get("flickr_size"))
        config = _saved_build_config(dataset)
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise RehydrateError(f"{dataset / GEOMETRY}: not a crop geometry ({type(e).__name__}: {e})") from None
    if config is None:
        raise RehydrateError(f"{dataset} records no crop geometry: neither {GEOMETRY} nor .work/build.json; "
                             "download its metainfo.zip again, or pack it from the build's output")
    try:
        return Geometry(expand=float(config["expand"]), size=int(config["size"]), flickr_size=config.get("flickr_size"))
    except (ValueError, TypeError, KeyError) as e:
        raise RehydrateError(f"{dataset / WORK_DIR / BUILD_STATE}: no crop geometry in it ({type(e).__name__}: "
                             f"{e})") from None


@dataclass(frozen=True)
class PublishedFace:
    """One face as the metadata publishes it; ``number`` is its published image number in ``split``."""

    split: str
    number: int
    photo_id: int
    line: Optional[int]
    user_nsid: Optional[str]
    #: the static image URL the build fetched (``download_url``), when the entry has one; FDF's own entries do not
    url: Optional[str]
    #: the photo's Flickr page (``photo_url``)
    page_url: Optional[str]
    box: tuple
    md5: Optional[str]


def _face(split: str, record: FaceRecord, md5: Optional[str]) -> PublishedFace:
    if record.photo_id is None:
        raise RehydrateError(f"{split}/{record.image}: the entry has neither photo_id nor a Flickr photo URL")
    box = record.original_bounding_box
    if not box or len(box) != 4:
        raise RehydrateError(f"{split}/{record.image}: no original_bounding_box to cut the face from")
    return PublishedFace(split, record.image, record.photo_id, record.yfcc100m_line_idx, record.user_nsid or None,
                         record.download_url or None, record.photo_url or None, tuple(box), md5)


def read_md5s(split_dir: Path) -> dict[int, str]:
    """The published md5 of each image of a split, from its ``images.md5`` (empty when it has none)."""
    path = Path(split_dir) / IMAGE_MD5S
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        digest, _, name = line.strip().partition("  ")
        m = re.fullmatch(r"images/(\d+)\.png", name)
        if m and re.fullmatch(r"[0-9a-f]{32}", digest):
            out[int(m.group(1))] = digest
    return out


def published_faces(dataset: Path) -> list[PublishedFace]:
    faces = []
    for split, directory in split_dirs(dataset):
        md5s = read_md5s(directory)
        for record in read_metainfo(directory).values():
            faces.append(_face(split, record, md5s.get(record.image)))
    return faces


@dataclass
class PhotoJob:
    photo_id: int
    faces: list[PublishedFace]
    url: Optional[str] = None


def group_by_photo(faces: Iterable[PublishedFace]) -> dict[int, PhotoJob]:
    """One job per photo, whatever the number of its faces or splits, in first-face order."""
    jobs: dict[int, PhotoJob] = {}
    for face in faces:
        job = jobs.setdefault(face.photo_id, PhotoJob(face.photo_id, []))
        job.faces.append(face)
        job.url = job.url or face.url
    return jobs


def find_in_yfcc(jobs: list[PhotoJob], yfcc: str, *, flickr_size: Optional[str],
                 on_bytes: Optional[Callable[[int], None]] = None) -> int:
    """Set the URL of each job from its YFCC100M line, streaming ``yfcc`` once; returns how many were found.

    A face's ``yfcc100m_line_idx`` finds its line; the photo id must match, so a
    file of another release (other line numbers) finds nothing wrong. Faces
    without a line index are found by photo id. Reading stops once all are found.
    """
    by_line, by_id = {}, {}
    for job in jobs:
        lines = {f.line for f in job.faces if f.line is not None}
        for line in lines:
            by_line[line] = job
        by_id[job.photo_id] = job
    found = 0
    with metadata.open_metadata(yfcc, on_bytes=on_bytes) as lines:
        for item in metadata.read_photos(lines):
            if not isinstance(item, Photo):
                continue
            job = by_line.get(item.line_number)
            if job is None or job.photo_id != item.photo_id:
                job = by_id.get(item.photo_id)
            if job is None or job.url is not None:
                continue
            job.url = metadata.photo_url(item, size=flickr_size)
            found += 1
            if found == len(jobs):
                break
    return found
