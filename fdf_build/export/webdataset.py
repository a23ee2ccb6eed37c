"""WebDataset shards: plain tar files, each face a group of members sharing its key (``train_00000012``).

Per sample: ``<key>.png`` (the dataset's PNG, byte for byte), ``<key>.json`` (:class:`~.samples.Sample`'s
record: the metainfo entry with license and author, the crop box, the attributes), ``<key>.landmarks.npy``
(``(7, 2) float32``) and, in builds with 68 landmarks, ``<key>.landmarks68.npy``. ``webdataset.WebDataset``
reads them as they are (``.decode("rgb8")`` gives the image as an array, ``.npy`` members as arrays).

Headers are fixed (mtime 0, root owner, mode 0644, members in name order within a sample), so the same samples
always give the same bytes.
"""

from __future__ import annotations

import io
import tarfile
from typing import BinaryIO, Iterable

from ..files import tar_info
from .samples import Sample, npy_bytes, record_json

EXTENSION = "tar"
#: at most what a tar adds after its last member: two zero blocks, then zeros up to a whole 10 KiB record
TRAILER = tarfile.RECORDSIZE


def members(sample: Sample) -> list[tuple[str, bytes]]:
    """A sample's (name, bytes) members, in the order they are written."""
    out = [(f"{sample.key}.json", record_json(sample.record)),
           (f"{sample.key}.landmarks.npy", npy_bytes(sample.landmarks))]
    if sample.landmarks68 is not None:
        out.append((f"{sample.key}.landmarks68.npy", npy_bytes(sample.landmarks68)))
    out.append((f"{sample.key}.png", sample.png))
    return out


def stored_size(sizes: list[int]) -> int:
    """What a sample of members of these sizes takes in a tar: a 512-byte header each, data padded to 512."""
    return sum(512 + -(-size // 512) * 512 for size in sizes)


def write_shard(samples: Iterable[Sample], stream: BinaryIO) -> int:
    """Write a tar of ``samples`` to ``stream`` (written front to back, never seeked); returns the sample count."""
    count = 0
    with tarfile.open(fileobj=stream, mode="w|", format=tarfile.USTAR_FORMAT, bufsize=1 << 20) as tar:
        for sample in samples:
            for name, data in members(sample):
                tar.addfile(tar_info(name, len(data)), io.BytesIO(data))
            count += 1
    return count
