"""A dataset of any size made of the faces of a real one, for the tests and benchmarks of what reads datasets.

Each face of the source (the demo's, say) is reused, hard-linked, as a face of a new photo with its own id,
owner, license and title (:func:`~fdf_build.sources.synthetic.synthetic_photo`), and split by owner as a
build splits; its attributes come along when the source has them. Exports, loaders and search then meet the
volume and variety of a large build without running one.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from ..sources.synthetic import synthetic_photo
from ..split import SPLITS, split_of
from .layout import load_array, split_dirs
from .metainfo import read_metainfo
from .splitwriter import write_split
from .writer import encode_png, write_attributes

#: CC licenses a build keeps by default, in turn
LICENSE_CYCLE = ("by", "by-sa", "by-nc", "by-nc-sa")


def replicate_dataset(source: Path, out: Path, faces: int, *, val_fraction: float = 0.1,
                      size: Optional[int] = None, attributes: bool = True) -> Counter:
    """Write a dataset of ``faces`` faces into ``out`` (absent or empty), cycling through ``source``'s; returns
    faces per split.

    ``size``: the crops resized to this side (small crops make large datasets quick to write and read);
    ``attributes``: bring the source's attributes along, if it has them.
    """
    from ..files import atomic_write, read_jsonl

    out = Path(out)
    originals = []
    for split, directory in split_dirs(source):
        records = read_metainfo(directory)
        landmarks, boxes = load_array(directory, "landmarks.npy"), load_array(directory, "bounding_box.npy")
        found = directory / "attributes.jsonl"
        extra = {int(r.pop("image")): r for r in read_jsonl(found)} if attributes and found.is_file() else {}
        for n in range(len(records)):
            png, box = directory / "images" / f"{n}.png", boxes[n]
            if size is not None:
                image = cv2.imread(str(png), cv2.IMREAD_COLOR)
                scale = size / image.shape[0]
                png = out / ".sources" / f"{split}_{n}.png"
                png.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(png, encode_png(cv2.cvtColor(cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA),
                                                          cv2.COLOR_BGR2RGB)))
                box = np.round(box * scale).astype(boxes.dtype)
            originals.append((png, records[str(n)], landmarks[n], box, extra.get(n)))
    if not originals:
        raise ValueError(f"{source}: no faces to replicate")
    per_split: dict[str, list] = {s: [] for s in SPLITS}
    for i in range(faces):
        png, record, landmarks, box, attributes = originals[i % len(originals)]
        photo = synthetic_photo(i, license=LICENSE_CYCLE[i % len(LICENSE_CYCLE)])
        record = dataclasses.replace(
            record, photo_id=photo.photo_id, user_nsid=photo.user_nsid, author=photo.user_nickname,
            photo_title=photo.title, photo_url=photo.page_url, download_url=photo.download_url,
            license=photo.license_name, license_url=photo.license_url, yfcc100m_line_idx=photo.line_number,
            face_index=0)
        per_split[split_of(photo.user_nsid, val_fraction)].append((png, record, landmarks, box, attributes))
    for split, items in per_split.items():
        write_split(Path(out) / split, [item[:4] for item in items], split=split)
        if all(item[4] is not None for item in items) and items:
            write_attributes(Path(out) / split, [item[4] for item in items])
    return Counter({split: len(items) for split, items in per_split.items()})
