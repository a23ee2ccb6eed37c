"""Reading and checking the FDF256 layout: ``ROOT/{train,val}/{images/<n>.png, landmarks.npy,
bounding_box.npy, fdf_metainfo.json}``, whether published or written by this project."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Optional

if TYPE_CHECKING:  # search reads the layout and must start without numpy or cv2: they are imported where used
    import numpy as np

from ..errors import DatasetError
from ..split import SPLITS
from .loaders import load_array, load_metainfo

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
#: the dataset's own records of what must never be in it again: the removal ledger, and the NSIDs and photo ids
#: removed or blocklisted; both only ever grow, and only removals write them (never a download or an archive)
LEDGER = "removed.jsonl"
BLOCKLIST = "blocklist.txt"
#: the owner page's queue of removal requests
REQUESTS = "removal-requests.jsonl"
RECORDS = (LEDGER, BLOCKLIST, REQUESTS)
_IMAGE_NAME = re.compile(r"^(\d+)\.png$")


def split_dirs(root: Path) -> list[tuple[str, Path]]:
    """The splits under ``root`` that have a metainfo file, in FDF order (train, val).

    A split whose metainfo is there but is not a file (a folder, say) is a :class:`DatasetError`, not a split
    left out: a search would answer "not found" and a pack would leave that split out.
    """
    root = Path(root)
    for split in SPLITS:
        path = root / split / METAINFO
        if os.path.lexists(path) and not path.is_file():
            raise DatasetError(f"{path}: not a file")
    return [(s, root / s) for s in SPLITS if (root / s / METAINFO).is_file()]


def dataset_splits(root: Path) -> list[tuple[str, Path]]:
    """:func:`split_dirs`, or a :class:`DatasetError` when there is none: a folder without a split is no dataset."""
    splits = split_dirs(root)
    if not splits:
        raise DatasetError(f"{root}: no train/ or val/ with {METAINFO}")
    return splits


def holds_dataset(root: Path) -> bool:
    """Whether ``root`` holds a dataset already (a split, a build's shards or the records of its removals): a
    download into it must take its lock, and keep its removals."""
    return any(os.path.lexists(Path(root) / name) for name in (*SPLITS, WORK_DIR, LEDGER, BLOCKLIST))


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
    return set(_images(split_dir)[0])


def _images(split_dir: Path) -> tuple[list[int], list[str]]:
    """The image numbers of a split's ``images/``, and the names there that are links or not plain files."""
    folder = Path(split_dir) / "images"
    if not folder.is_dir():
        return [], []
    numbers, odd = [], []
    with os.scandir(folder) as entries:
        for entry in entries:
            if (m := _IMAGE_NAME.match(entry.name)):
                numbers.append(int(m.group(1)))
                if not entry.is_file(follow_symlinks=False):
                    odd.append(entry.name)
    return numbers, sorted(odd)


def verify_split(split_dir: Path, license_urls: Optional[Iterable[str]] = None) -> list[str]:
    """Problems with one split (empty when consistent).

    Every face numbered 0..N-1 in the metainfo must have a row in
    ``landmarks.npy`` (N, 7, 2) and ``bounding_box.npy`` (N, 4), and an image,
    unless ``license_urls`` is given, in which case only faces under those
    licenses must have one (a partial download of some license archives).
    """
    from ..sources.filters import normalize_license_url

    split_dir = Path(split_dir)
    problems = []
    try:
        meta = load_metainfo(split_dir)
    except DatasetError as e:
        return [str(e)]
    n = len(meta)
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
            load_array(split_dir, name, shape=shape, mmap_mode="r")
        except DatasetError as e:
            problems.append(str(e))
    wanted = None if license_urls is None else {normalize_license_url(u) for u in license_urls}
    expected = {
        int(k) for k, m in meta.items()
        if k.isdigit() and (wanted is None or normalize_license_url(m.get("license_url", "")) in wanted)
    }
    numbers, odd = _images(split_dir)
    images = set(numbers)
    if (split_dir / "images").is_symlink() or split_dir.is_symlink():
        problems.append(f"{split_dir}: a symbolic link in its path (images must be the dataset's own files)")
    if odd:
        problems.append(f"{split_dir / 'images'}: {len(odd)} image(s) that are links or not plain files, "
                        f"e.g. {odd[:5]}")
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
