"""The streaming merge: its files are the bytes a dump of the whole split held in memory would give.

The benchmark (benchmarks/scale.py) checks the same against the old in-memory merge at 100k and 1M faces;
here the invariants that define those bytes are checked on real crops, at sizes where key order matters.
"""

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from fdf_build.crop import cut_face
from fdf_build.dataset.splitwriter import string_order
from fdf_build.dataset.writer import ShardWriter, merge_shards
from fdf_build.geometry import CropGeometry
from fdf_build.records import Face
from fdf_build.sources.synthetic import synthetic_photo
from fdf_build.split import split_of

from .conftest import DEMO_DATA, load_rgb
from .datasets import BOX, KEYPOINTS

PHOTOS = 16  # 1-2 faces each: over 10 faces a split, so "10" sorts before "2"
# two owners in each split; photos 2k and 2k+1 are owner k % 4's
OWNERS = [n for split in ("train", "val") for n in [f"owner{j}@N00" for j in range(50)
                                                    if split_of(f"owner{j}@N00", 0.4) == split][:2]]
OWNERS[1:3] = OWNERS[2:0:-1]


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    """A shard of real crops; photo 11 has the id of photo 3 (YFCC lines can repeat an id), photo 5 has 68 landmarks."""
    image = load_rgb(DEMO_DATA / "codait_luciano.jpg")
    work = tmp_path_factory.mktemp("merge") / "shard_00000"
    writer = ShardWriter(work, detector="test", crawl_date="2026-01-01")
    for i in range(PHOTOS):
        extra = {"photo_id": synthetic_photo(3).photo_id} if i == 11 else {}
        photo = synthetic_photo(i, nsid=OWNERS[i // 2 % 4], title=f'photo {i}, "é"\nmore', **extra)
        for k in range(1 + i % 2):
            landmarks68 = np.tile(KEYPOINTS[:1], (68, 1)) + np.arange(68)[:, None] if i == 5 else None
            face = Face(box=BOX + k * 5, score=0.9, keypoints=KEYPOINTS + k * 5, keypoint_model="test",
                        landmarks68=None if landmarks68 is None else landmarks68.astype(np.float32))
            writer.add_face(cut_face(photo, image, face, k, CropGeometry(), photo.download_url))
    writer.close()
    return work


@pytest.fixture(scope="module")
def merged(shard, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    counts = merge_shards([shard], out, val_fraction=0.4)
    return out, counts


def test_string_order_is_the_order_of_the_keys_as_strings():
    for n in (0, 1, 9, 10, 11, 99, 100, 101, 1234):
        assert list(string_order(n)) == sorted(range(n), key=str)


def test_metainfo_is_the_sorted_dump_of_the_faces_in_line_order(shard, merged):
    out, counts = merged
    rows = [json.loads(line) for line in (shard / "faces.jsonl").read_text().splitlines()]
    for split in ("train", "val"):
        expected = [r for r in rows if split_of(r["user_nsid"], 0.4) == split]
        assert counts[split] == len(expected) > 10
        text = (out / split / "fdf_metainfo.json").read_text(encoding="utf-8")
        meta = json.loads(text)
        assert text == json.dumps(meta, ensure_ascii=False, sort_keys=True)
        assert [(meta[str(n)]["yfcc100m_line_idx"], meta[str(n)]["face_index"]) for n in range(len(expected))] == [
            (str(r["yfcc100m_line_idx"]), r["face_index"]) for r in expected]
        assert {m["category"] for m in meta.values()} == {"training" if split == "train" else "validation"}
        for n, r in enumerate(expected):
            assert (out / split / "images" / f"{n}.png").read_bytes() == (shard / "faces" / r["_file"]).read_bytes()


def test_arrays_are_what_np_save_writes(shard, merged):
    out, _ = merged
    for split in ("train", "val"):
        meta = json.loads((out / split / "fdf_metainfo.json").read_text(encoding="utf-8"))
        for name in ("landmarks.npy", "bounding_box.npy"):
            array = np.load(out / split / name)
            buf = io.BytesIO()
            np.save(buf, array)
            assert (out / split / name).read_bytes() == buf.getvalue()
        boxes = np.load(out / split / "bounding_box.npy")
        assert boxes.dtype == np.int64 and boxes.shape == (len(meta), 4)
        np.testing.assert_allclose(boxes / 256, [meta[str(n)]["bounding_box"] for n in range(len(meta))], atol=1e-6)
    with_68 = [split for split in ("train", "val") if (out / split / "landmarks68.npy").exists()]
    assert with_68 == [split_of(OWNERS[2], 0.4)]  # photo 5's owner, the only one with 68 landmarks
    landmarks68 = np.load(out / with_68[0] / "landmarks68.npy")
    meta = json.loads((out / with_68[0] / "fdf_metainfo.json").read_text(encoding="utf-8"))
    has = [n for n in range(len(meta)) if "landmark68" in meta[str(n)]]
    assert len(has) == 2 and landmarks68.shape == (len(meta), 68, 2)
    assert np.isnan(np.delete(landmarks68, has, axis=0)).all() and not np.isnan(landmarks68[has]).all()


def test_attribution_has_a_row_per_photo_with_all_its_faces(merged):
    out, _ = merged
    split = split_of(OWNERS[1], 0.4)  # photos 2, 3, 10 and 11 (which has photo 3's id)
    meta = json.loads((out / split / "fdf_metainfo.json").read_text(encoding="utf-8"))
    rows = list(csv.DictReader(io.StringIO((out / split / "attribution.csv").read_text(encoding="utf-8"), newline="")))
    photo3 = str(synthetic_photo(3).photo_id)
    faces_of = {}
    for n in range(len(meta)):
        faces_of.setdefault(str(meta[str(n)]["photo_id"]), []).append(str(n))
    assert [r["photo_id"] for r in rows] == list(faces_of)  # first appearance order, each photo once
    assert [r["images"].split() for r in rows] == list(faces_of.values())
    (row,) = [r for r in rows if r["photo_id"] == photo3]
    assert len(row["images"].split()) == 4 and row["title"] == 'photo 3, "é"\nmore'  # photo 11's faces after 3's


def test_a_failed_merge_leaves_the_old_split_and_no_staging_folder(shard, tmp_path):
    merge_shards([shard], tmp_path, val_fraction=0.4)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    seen = []

    def exclude(record):
        seen.append(record)
        if len(seen) == 7:
            raise OSError(28, "No space left on device")
        return False

    with pytest.raises(OSError):
        merge_shards([shard], tmp_path, val_fraction=0.4, exclude=exclude)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train", "val"]
