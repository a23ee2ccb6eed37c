"""Reading and checking the FDF256 layout: ``ROOT/{train,val}/{images/<n>.png, landmarks.npy,
bounding_box.npy, fdf_metainfo.json}``, whether published or written by this project."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Optional

if TYPE_CHECKING:  # search reads the layout and must start without numpy or cv2: they are imported where used
    import numpy as np

from ..errors import BadInput
from ..split import SPLITS

METAINFO = "fdf_metainfo.json"
#: optional, in builds with ``--landmarks``: (N, 68, 2) face-alignment landmarks in [0, 1] of the crop
LANDMARKS68 = "landmarks68.npy"
#: in builds of this project: (N, 2) uint64, each face's crop and photo pHash (fdf_build.dedup), 0 where unknown
PHASH = "phash.npy"
#: per split, in packs and downloads: each image's md5 in ``md5sum`` format (``cd train && md5sum -c images.md5``),
#: what a rehydrated image must equal to be the published one
IMAGE_MD5S = "images.md5"
#: a build's shards, under its output directory (the dataset)
WORK_DIR = ".work"
_IMAGE_NAME = re.compile(r"^(\d+)\.png$")


def split_dirs(root: Path) -> list[tuple[str, Path]]:
    """The splits under ``root`` that have a metainfo file, in FDF order (train, val)."""
    root = Path(root)
    return [(s, root / s) for s in SPLITS if (root / s / METAINFO).is_file()]


class DatasetError(BadInput):
    """A dataset that cannot be read as the FDF layout (a malformed metainfo, a missing image or array, no split
    at all). Commands print it as one line and exit 2: it is bad input, not a bug."""


def dataset_splits(root: Path) -> list[tuple[str, Path]]:
    """:func:`split_dirs`, or a :class:`DatasetError` when there is none: a folder without a split is no dataset."""
    splits = split_dirs(root)
    if not splits:
        raise DatasetError(f"{root}: no train/ or val/ with {METAINFO}")
    return splits


def load_metainfo(split_dir: Path) -> dict:
    path = Path(split_dir) / METAINFO
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise DatasetError(f"{path}: not a valid {METAINFO} ({e})") from None
    if not isinstance(meta, dict):
        raise DatasetError(f"{path}: not a valid {METAINFO} (a JSON {type(meta).__name__}, not an object)")
    return meta


def load_array(split_dir: Path, name: str, **kw) -> np.ndarray:
    """``split_dir/name`` (``landmarks.npy``...) as ``np.load`` gives it, or a :class:`DatasetError`."""
    import numpy as np

    path = Path(split_dir) / name
    try:
        return np.load(path, **kw)
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path}: not a readable .npy file ({e})") from None


def read_image(split_dir: Path, number: int) -> np.ndarray:
    """Face ``number`` of a split as ``(H, W, 3) uint8`` RGB, or a :class:`DatasetError` naming the file."""
    import cv2

    path = Path(split_dir) / "images" / f"{number}.png"
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        why = "missing" if not path.exists() else "not a readable image"
        raise DatasetError(f"{path}: {why} (`fdf-build verify {Path(split_dir).parent}` checks the whole dataset)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def image_numbers(split_dir: Path) -> set[int]:
    folder = Path(split_dir) / "images"
    if not folder.is_dir():
        return set()
    return {int(m.group(1)) for p in folder.iterdir() if (m := _IMAGE_NAME.match(p.name))}


def verify_split(split_dir: Path, license_urls: Optional[Iterable[str]] = None) -> list[str]:
    """Problems with one split (empty when consistent).

    Every face numbered 0..N-1 in the metainfo must have a row in
    ``landmarks.npy`` (N, 7, 2) and ``bounding_box.npy`` (N, 4), and an image,
    unless ``license_urls`` is given, in which case only faces under those
    licenses must have one (a partial download of some license archives).
    """
    import numpy as np  # here, not at the top: search reads the layout and must start without numpy

    from ..sources.filters import normalize_license_url

    split_dir = Path(split_dir)
    problems = []
    try:
        meta = load_metainfo(split_dir)
    except DatasetError as e:
        return [str(e)]
    n = len(meta)
    if sorted(meta, key=lambda k: int(k) if k.isdigit() else -1) != [str(i) for i in range(n)]:
        problems.append(f"{split_dir / METAINFO}: keys are not 0..{n - 1}")
    arrays = [("landmarks.npy", (n, 7, 2)), ("bounding_box.npy", (n, 4))]
    if (split_dir / LANDMARKS68).is_file():
        arrays.append((LANDMARKS68, (n, 68, 2)))
    if (split_dir / PHASH).is_file():
        arrays.append((PHASH, (n, 2)))
    for name, shape in arrays:
        path = split_dir / name
        if not path.is_file():
            problems.append(f"{path}: missing")
            continue
        try:
            found = np.load(path, mmap_mode="r").shape
        except (OSError, ValueError) as e:
            problems.append(f"{path}: cannot be read ({e})")
            continue
        if found != shape:
            problems.append(f"{path}: shape {found}, expected {shape}")
    wanted = None if license_urls is None else {normalize_license_url(u) for u in license_urls}
    expected = {
        int(k) for k, m in meta.items()
        if k.isdigit() and (wanted is None or normalize_license_url(m.get("license_url", "")) in wanted)
    }
    images = image_numbers(split_dir)
    missing, extra = expected - images, images - {int(k) for k in meta if k.isdigit()}
    if missing:
        problems.append(f"{split_dir / 'images'}: {len(missing)} image(s) missing, e.g. {sorted(missing)[:5]}")
    if extra:
        problems.append(f"{split_dir / 'images'}: {len(extra)} image(s) not in the metainfo, e.g. {sorted(extra)[:5]}")
    return problems


def verify_dataset(root: Path, license_urls: Optional[Iterable[str]] = None) -> dict[str, list[str]]:
    """Problems per split; a root without any split is a problem of its own."""
    splits = split_dirs(root)
    if not splits:
        return {"(root)": [f"{root}: no train/ or val/ with {METAINFO}"]}
    license_urls = None if license_urls is None else list(license_urls)
    return {split: verify_split(path, license_urls) for split, path in splits}
