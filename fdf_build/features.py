"""``fdf-build features``: an FFHQ-Features json folder for any face images (FFHQ itself, CelebA-HQ, your own).

One ``OUT/<stem>.json`` per image, in FFHQ-Features' form: a list of face records (``[]`` when the image has no
face), several faces largest first, ``faceRectangle`` in that image's pixels, the 14 attributes computed on the
image itself (:class:`~fdf_build.attributes.AttributeModels`). Each file is written whole (temp file, then
rename), so a killed run leaves only complete files (and perhaps a temp file, which the next run deletes), and
the next run skips the images that have theirs. One run writes to a folder at a time.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import uuid
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

from .dataset.features import face_record, face_rectangle
from .decode import decode_image
from .errors import BadInput
from .files import remove_leftover_temps, write_json
from .records import Skip

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
LIST_SUFFIXES = (".txt", ".lst")
#: the cloud API behind FFHQ-Features found faces of 36 px and up in the image it was given
DEFAULT_MIN_FACE = 36


class FeaturesInputError(BadInput):
    """Inputs that name no image, or two images that would write the same ``<stem>.json``."""


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def expand_inputs(inputs: Iterable[str]) -> list[Path]:
    """Image paths from the command line's inputs: images; folders (searched recursively for images); glob
    patterns (quoted, so the shell leaves them to us: ``'ffhq/*/*.png'``); list files (``.txt``/``.lst``: one
    path a line, relative to the list's folder, ``#`` comments). Each output name is an image's stem, so two
    images with one stem are refused before any work."""
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if any(c in item for c in "*?[") and not path.exists():
            found = sorted(Path(p) for p in glob.glob(item, recursive=True))
            if not found:
                raise FeaturesInputError(f"{item}: the pattern matches no file")
            paths += [p for p in found if p.is_file()]
        elif path.is_dir():
            paths += _images_in(path)
        elif path.suffix.lower() in LIST_SUFFIXES and path.is_file():
            lines = path.read_text(encoding="utf-8").splitlines()
            listed = [path.parent / line.strip() for line in lines if line.strip() and not line.startswith("#")]
            missing = [str(p) for p in listed if not p.is_file()]
            if missing:
                raise FeaturesInputError(f"{path}: {len(missing)} listed file(s) do not exist (e.g. {missing[0]})")
            paths += listed
        elif path.is_file():
            paths.append(path)
        else:
            raise FeaturesInputError(f"{item}: no such file or folder")
    stems: dict[str, Path] = {}
    for p in dict.fromkeys(paths):  # the same file named twice is one image
        if p.stem in stems and stems[p.stem].resolve() != p.resolve():
            raise FeaturesInputError(f"{stems[p.stem]} and {p} would both write {p.stem}.json: rename one, or run "
                                     "them into different --out folders")
        stems[p.stem] = p
    if not stems:
        raise FeaturesInputError(f"no image ({', '.join(IMAGE_SUFFIXES)}) in {', '.join(inputs)}")
    return list(stems.values())


def face_id(digest: str, index: int) -> str:
    """A stable id per face: uuid5 of the image's sha256 and the face's index (largest first)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"sha256:{digest}#{index}"))


class FeatureAnnotator:
    """Detector and attribute models, loaded once per process: ``annotator(data)`` turns one image file's bytes
    into its FFHQ-Features list, or a :class:`~fdf_build.records.Skip` when it cannot be decoded."""

    def __init__(self, *, min_face: int = DEFAULT_MIN_FACE, parsing: Optional[bool] = None, threads: int = 1):
        from .attributes import AttributeModels
        from .models.faces import RetinaFaceDetector

        self.detector = RetinaFaceDetector(threads=threads)
        self.models = AttributeModels(threads=threads, parsing=parsing)
        self.min_face = min_face

    def __call__(self, data: bytes):
        image = decode_image(data)
        if isinstance(image, Skip):
            return image
        faces = [f for f in self.detector(image) if min(f.box[2] - f.box[0], f.box[3] - f.box[1]) >= self.min_face]
        faces.sort(key=lambda f: -float((f.box[2] - f.box[0]) * (f.box[3] - f.box[1])))
        annotations = self.models.faces([(image, f.box.astype(float)) for f in faces])
        digest = hashlib.sha256(data).hexdigest()
        return [face_record(a, face_id=face_id(digest, i), rectangle=face_rectangle(f.box))
                for i, (f, a) in enumerate(zip(faces, annotations))]


@dataclass
class FeaturesSummary:
    images: int = 0
    already_done: int = 0
    written: int = 0
    faces: int = 0
    without_face: int = 0
    skipped: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)


_worker: Optional[FeatureAnnotator] = None


def _start_worker(options: dict) -> None:
    global _worker
    _worker = FeatureAnnotator(**options)


def _annotate(path: Path):
    return path, _worker(path.read_bytes())


def run_features(images: Sequence[Path], out: Path, *, workers: int = 1, min_face: int = DEFAULT_MIN_FACE,
                 parsing: Optional[bool] = None, progress: Optional[Callable[[str, int], None]] = None,
                 annotator: Optional[FeatureAnnotator] = None) -> FeaturesSummary:
    """Write ``out/<stem>.json`` for each image that has none yet; ``workers`` processes (each with its own
    models, one thread each), or this process with ``annotator`` (or a new one) when ``workers`` is 1."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    remove_leftover_temps(out, "*.json")  # a killed run's half-written file, never renamed into place
    summary = FeaturesSummary(images=len(images))
    todo = [p for p in images if not (out / f"{p.stem}.json").is_file()]
    summary.already_done = len(images) - len(todo)
    if progress and summary.already_done:
        progress("images", summary.already_done)
    options = dict(min_face=min_face, parsing=parsing)
    if workers <= 1 or len(todo) <= 1:
        annotator = annotator or FeatureAnnotator(**options)
        results: Iterable = ((p, annotator(p.read_bytes())) for p in todo)
        _write_all(results, out, summary, progress)
    else:
        # spawned, not forked: onnxruntime's and TFLite's thread pools do not survive a fork
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_start_worker,
                                 initargs=(options,)) as pool:
            _write_all(pool.map(_annotate, todo, chunksize=4), out, summary, progress)
    return summary


def _write_all(results: Iterable, out: Path, summary: FeaturesSummary, progress) -> None:
    for path, records in results:
        if isinstance(records, Skip):
            summary.skipped[records.reason.value] += 1
            summary.examples.setdefault(records.reason.value, f"{path}: {records.detail}")
            log.debug("%s: %s", path, records.detail)
        else:
            write_json(out / f"{path.stem}.json", records, sort_keys=False)
            summary.written += 1
            summary.faces += len(records)
            summary.without_face += not records
        if progress:
            progress("images", 1)


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
