"""A map-style dataset over the FDF layout, for training loops (PyTorch's DataLoader or plain Python)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np

from ..split import SPLITS
from .layout import LANDMARKS68
from .loaders import load_array
from .metainfo import FaceRecord, read_metainfo

#: the record's text fields (license, author, user_nsid, photo_url, dates...), the ones every entry has as a string:
#: ``item["metainfo"]``, which a DataLoader's default collate turns into lists of strings
TEXT_FIELDS = tuple(f.name for f in dataclasses.fields(FaceRecord) if isinstance(f.default, str))


class FDF256Dataset:
    """Faces of one split of an FDF256 copy (published or built by this project).

    ``dataset[i]`` is a dict:

    * ``image``: ``(256, 256, 3) uint8`` RGB (or whatever ``transform`` makes of it),
    * ``keypoints``: ``(7, 2) float32`` in [0, 1] of the crop, COCO order (nose, left eye, right eye,
      left ear, right ear, left shoulder, right shoulder; the person's left), NaN where missing,
    * ``box``: ``(4,) int64`` face box x0, y0, x1, y1 in crop pixels,
    * ``index``: the face's number (its image's name and metainfo key),
    * ``metainfo``: the face's text fields (:data:`TEXT_FIELDS`: license, license_url, author, user_nsid,
      photo_title, photo_url, dates...) as a dict of strings,
    * ``landmarks68``: ``(68, 2) float32`` in [0, 1] of the crop, only in builds made with ``--landmarks``.

    Keypoints and box refer to the crop, not to the original photo; ``dataset.record(item["index"])`` is the
    whole :class:`~fdf_build.dataset.metainfo.FaceRecord` (``original_bounding_box``, ``original_landmark``,
    scores...). Needs no torch: it is a plain sequence of arrays, numbers and strings, so a
    ``torch.utils.data.DataLoader`` with its default collate batches it as is.
    """

    def __init__(self, root: Path, split: str = "train", transform: Optional[Callable] = None):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.directory = Path(root) / split
        if not (self.directory / "fdf_metainfo.json").is_file():
            raise FileNotFoundError(f"{self.directory}: no fdf_metainfo.json; download or build the dataset first")
        self.metainfo: dict[str, FaceRecord] = read_metainfo(self.directory)
        n = len(self.metainfo)  # a file that is not what it should be is a DatasetError naming it
        self.landmarks = load_array(self.directory, "landmarks.npy", shape=(n, 7, 2))
        self.boxes = load_array(self.directory, "bounding_box.npy", shape=(n, 4))
        self.landmarks68 = (load_array(self.directory, LANDMARKS68, shape=(n, 68, 2))
                            if (self.directory / LANDMARKS68).is_file() else None)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.metainfo)

    def record(self, index) -> FaceRecord:
        """Face ``index``'s typed record; ``index`` may be an item's ``index``, batched (a tensor element) or not."""
        return self.metainfo[str(int(index))]

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} faces")
        index %= len(self)
        path = self.directory / "images" / f"{index}.png"
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(f"{path}: missing or unreadable")
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        if self.transform is not None:
            image = self.transform(image)
        return {
            "image": image,
            "keypoints": self.landmarks[index].astype(np.float32),
            "box": self.boxes[index].astype(np.int64),
            "index": index,
            "metainfo": {name: getattr(self.record(index), name) for name in TEXT_FIELDS},
            **({} if self.landmarks68 is None else {"landmarks68": self.landmarks68[index].astype(np.float32)}),
        }
