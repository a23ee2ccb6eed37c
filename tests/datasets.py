"""Small FDF datasets written by the project's own writer, from a real photo, for download/privacy tests."""

import re
from pathlib import Path

import numpy as np

from fdf_build.crop import cut_face
from fdf_build.dataset.writer import ShardWriter, merge_shards
from fdf_build.geometry import CropGeometry
from fdf_build.records import Face
from fdf_build.sources.synthetic import synthetic_photo

from .conftest import DEMO_DATA, load_rgb

LICENSE_CYCLE = ("by", "by-nc", "by-sa", "by-nc-sa")
# the face in codait_luciano.jpg (400 x 400), with its nose and eyes
BOX = np.array([136, 46, 265, 220], dtype=np.float32)
KEYPOINTS = np.array([[198, 145], [225, 118], [166, 121]] + [[np.nan, np.nan]] * 4, dtype=np.float32)


def make_dataset(root: Path, owners: list[str], *, val_fraction: float = 0.3, first_photo: int = 0,
                 distinct: bool = False) -> Path:
    """One photo per entry of ``owners`` (an NSID; repeat it for several photos), 1-2 faces each.

    ``distinct``: every photo's pixels differ a little (shifted by its number), so no two faces share bytes.
    """
    pixels = load_rgb(DEMO_DATA / "codait_luciano.jpg")
    work = Path(root) / ".work" / "shard_00000"
    writer = ShardWriter(work, detector="test", crawl_date="2026-01-01")
    for i, nsid in enumerate(owners, start=first_photo):
        image = np.roll(pixels, i, axis=1) if distinct else pixels
        photo_record = synthetic_photo(i, nsid=nsid, license=LICENSE_CYCLE[i % 4], title=f"photo {i} of {nsid}")
        for k in range(1 + i % 2):
            box = BOX + k * 5
            face = Face(box=box, score=0.99, keypoints=KEYPOINTS + k * 5, keypoint_model="test")
            writer.add_face(cut_face(photo_record, image, face, k, CropGeometry(), photo_record.download_url))
    writer.close()
    merge_shards([work], Path(root), val_fraction=val_fraction)
    return Path(root)


def card_faces(root: Path) -> dict:
    """Faces per split as the dataset card (``DATASET/README.md``, read by huggingface_hub's parser) states them."""
    from huggingface_hub import DatasetCard

    text = DatasetCard.load(Path(root) / "README.md").text
    return {m.group(1): int(m.group(2).replace(",", ""))
            for m in re.finditer(r"^\| (train|val) \| ([\d,]+) \|", text, flags=re.M)}
