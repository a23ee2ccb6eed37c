"""StyleGAN2-ADA / StyleGAN3 datasets: the zip that their ``dataset_tool.py`` makes and ``ImageFolderDataset`` reads.

Images are named as ``dataset_tool.py`` names them, ``00000/img00000000.png`` (the zip's n-th face; sorted
names are the faces' order, which is how ``ImageFolderDataset`` indexes them), stored uncompressed in the zip;
the PNGs are the dataset's own bytes (StyleGAN decodes any PNG; ``dataset_tool.py`` would re-encode them
without compression). ``dataset.json`` holds ``{"labels": [[name, label], ...]}`` when a label is chosen
(``null`` otherwise): a class index (one-hot in StyleGAN) or a list of floats, from an attribute or the split
(:data:`LABELS`), plus ``fdf_build``: which label and its class names. Beside each image,
``00000/img00000000.json`` carries the face's record (license, author, metainfo, attributes): StyleGAN reads
image files only, so it ignores them.

One zip per split (``train.zip``, ``val.zip``); with the label ``split``, one zip of the chosen splits
(``train+val.zip``), each face labelled with its split.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterable, Iterator, Optional, Union

from ..dataset.archive import write_zip
from ..errors import BadInput
from ..split import SPLITS
from .samples import Sample, record_json

EXTENSION = "zip"
EMOTIONS = ("anger", "contempt", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")


def _attribute(name: str) -> Callable[[dict], object]:
    def value(record: dict):
        return ((record.get("attributes") or {}).get("faceAttributes") or {}).get(name)
    return value


def _strongest(record: dict) -> Optional[str]:
    emotion = _attribute("emotion")(record)
    return max(EMOTIONS, key=lambda k: emotion.get(k, -1.0)) if emotion else None


def _floats(name: str, keys: tuple[str, ...] = ()) -> Callable[[dict], Optional[list]]:
    def value(record: dict):
        found = _attribute(name)(record)
        if found is None:
            return None
        return [float(found[k]) for k in keys] if keys else [float(found)]
    return value


@dataclass(frozen=True)
class Label:
    """A StyleGAN label: a class (``classes`` names them, in index order) or, with ``classes`` None, floats."""

    value: Callable[[dict], Union[str, list, None]]
    classes: Optional[tuple[str, ...]] = None

    def of(self, record: dict) -> Union[int, list, None]:
        found = self.value(record)
        if found is None or self.classes is None:
            return found
        if found not in self.classes:
            raise BadInput(f"a face's label {found!r} is not one of {self.classes}")
        return self.classes.index(found)


#: ``--label`` choices; attributes come from ``fdf-build attributes`` (FFHQ-Features names)
LABELS = {
    "split": Label(lambda record: record["split"], SPLITS),
    "gender": Label(_attribute("gender"), ("female", "male")),
    "glasses": Label(_attribute("glasses"), ("NoGlasses", "ReadingGlasses", "Sunglasses", "SwimmingGoggles")),
    "emotion": Label(_strongest, EMOTIONS),
    "age": Label(_floats("age")),
    "smile": Label(_floats("smile")),
    "headPose": Label(_floats("headPose", ("pitch", "roll", "yaw"))),
}


def image_name(position: int) -> str:
    """``dataset_tool.py``'s name for the zip's ``position``-th image."""
    digits = f"{position:08d}"
    return f"{digits[:5]}/img{digits}.png"


def zips(splits: tuple[str, ...], label: Optional[str]) -> list[tuple[str, tuple[str, ...]]]:
    """The zips an export writes, each with the splits it holds."""
    if label == "split":
        return [("+".join(splits) + f".{EXTENSION}", splits)]
    return [(f"{split}.{EXTENSION}", (split,)) for split in splits]


def dataset_json(labels: Optional[list], label: Optional[str]) -> bytes:
    about = {"label": label, **({"classes": list(LABELS[label].classes)} if label and LABELS[label].classes else {})}
    return json.dumps({"labels": labels, "fdf_build": about}, sort_keys=True).encode()


def write_shard(samples: Iterable[Sample], stream: BinaryIO, *, label: Optional[str] = None) -> int:
    """Write a StyleGAN zip of ``samples`` (in order) to ``stream``; returns the sample count.

    Every sample must have the label (``run_export`` checks that before writing): StyleGAN takes labels for
    all faces or for none.
    """
    chosen = LABELS[label] if label else None
    labels: list = []
    count = 0

    def members() -> Iterator[tuple[str, bytes]]:
        nonlocal count
        for count, sample in enumerate(samples, start=1):
            position = count - 1
            name = image_name(position)
            if chosen is not None:
                labels.append([name, chosen.of(sample.record)])
            yield name[:-len(".png")] + ".json", record_json(sample.record)
            yield name, sample.png
        yield "dataset.json", dataset_json(labels if chosen else None, label)

    write_zip(stream, members())
    return count
