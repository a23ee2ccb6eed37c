"""A dataset's near-duplicate faces, across its splits: ``fdf-build duplicates``, the report and the card read them here.

Hashes come from each split's ``phash.npy`` (written by the build); a split without one (a published FDF256
copy) has its images hashed now, the same way the build hashes its crops.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from numpy.typing import NDArray

from .. import dedup
from .layout import PHASH, DatasetError, load_array, read_image, split_dirs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DuplicateGroup:
    """Near-identical faces, as (split, image number), in split then image order."""

    faces: tuple[tuple[str, int], ...]
    #: the most bits any two of its faces' hashes differ by
    distance: int

    @property
    def splits(self) -> list[str]:
        return sorted({split for split, _ in self.faces})

    def to_json(self) -> dict:
        return {"faces": [{"split": s, "image": n} for s, n in self.faces], "splits": self.splits,
                "distance": self.distance}


def face_hashes(split_dir: Path, *, progress: Optional[Callable[[str, int], None]] = None) -> NDArray[np.uint64]:
    """``(N,) uint64`` crop hashes of one split: its ``phash.npy``, or its images hashed now."""
    split_dir = Path(split_dir)
    count = load_array(split_dir, "landmarks.npy", mmap_mode="r").shape[0]
    if (split_dir / PHASH).is_file():
        hashes = load_array(split_dir, PHASH)
        if hashes.shape != (count, 2):
            raise DatasetError(f"{split_dir / PHASH}: shape {hashes.shape}, expected {(count, 2)}")
        return hashes[:, 0].astype(np.uint64)
    log.info("%s: no %s, hashing its %d images", split_dir, PHASH, count)
    out = np.empty(count, dtype=np.uint64)
    for n in range(count):
        out[n] = dedup.to_uint64([dedup.phash(read_image(split_dir, n))])[0]
        if progress:
            progress("images hashed", 1)
    return out


def find_duplicates(root: Path, *, threshold: int = dedup.THRESHOLD,
                    progress: Optional[Callable[[str, int], None]] = None) -> list[DuplicateGroup]:
    """Every group of near-identical faces of the dataset at ``root``, across its splits, largest first."""
    names, parts = [], []
    for split, directory in split_dirs(root):
        hashes = face_hashes(directory, progress=progress)
        names += [(split, n) for n in range(len(hashes))]
        parts.append(hashes)
    if not parts:
        raise DatasetError(f"{root}: no train/ or val/ with fdf_metainfo.json")
    hashes = np.concatenate(parts)
    compared = None if progress is None else (lambda rows: progress("faces compared", rows))
    found = dedup.groups(hashes, threshold, progress=compared)
    groups = [DuplicateGroup(tuple(names[i] for i in members),
                             int(dedup.hamming(hashes[members][:, None], hashes[members][None, :]).max()))
              for members in found]
    return sorted(groups, key=lambda g: (-len(g.faces), g.faces))
