"""The offline demo shows the whole product: faces in both splits, split by the real rule, and the summary the
README quotes. It runs once, as the README's first command runs it: the installed console script (conftest's
``demo_server``)."""

import json
import re

import pytest

from fdf_build.config import DEFAULT_VAL_FRACTION
from fdf_build.demo import DEMO_VAL_OWNERS, demo_metadata, demo_photos
from fdf_build.split import split_of

from .conftest import REPO
from .datasets import card_faces
from .demo_faces import UNANNOTATED_DETECTIONS, VAL_PHOTOS, demo_annotations, iou

#: the license demo.py gives each photo's record, written down: every face must carry its own photo's
DEMO_LICENSE = {"codait_luciano.jpg": "by", "pexels_baseball_team.jpg": "by-sa", "pexels_cyclists.jpg": "by-nc",
                "pexels_face_paint_lowres.jpg": "by-nc-sa", "pexels_tennis_player.jpg": "by",
                "pexels_woman_turned.jpg": "by-sa", "skimage_astronaut.jpg": "by-nc",
                "whitehouse_obama_biden.jpg": "by"}


@pytest.fixture(scope="module")
def demo(demo_server):
    return demo_server.out, "\n".join(demo_server.summary)


def test_demo_owners_split_by_the_default_rule():
    records, _ = demo_metadata(demo_photos())
    by_title = {p.title: p.user_nsid for p in records}
    for name, nsid in DEMO_VAL_OWNERS.items():
        assert by_title[name.rsplit(".", 1)[0].replace("_", " ")] == nsid
    assert {p.user_nsid for p in records if split_of(p.user_nsid, DEFAULT_VAL_FRACTION) == "val"} == set(
        DEMO_VAL_OWNERS.values())


def test_demo_writes_faces_to_both_splits_by_author(demo):
    out, output = demo
    meta = {split: json.loads((out / split / "fdf_metainfo.json").read_text()) for split in ("train", "val")}
    authors = {split: {m["user_nsid"] for m in faces.values()} for split, faces in meta.items()}
    assert authors["val"] == set(DEMO_VAL_OWNERS.values())
    assert authors["train"] and not authors["train"] & authors["val"]
    for split, faces in meta.items():
        assert sorted(p.name for p in (out / split / "images").iterdir()) == sorted(f"{i}.png" for i in range(len(faces)))
    kept = re.search(r"(\d+) kept: (\d+) train, (\d+) val", output)
    assert kept and tuple(map(int, kept.groups())) == (len(meta["train"]) + len(meta["val"]), len(meta["train"]),
                                                        len(meta["val"]))


def test_the_demo_writes_a_dataset_card_the_hub_reads(demo):
    hub = pytest.importorskip("huggingface_hub", reason="the test extra is not installed: pip install -e '.[test]'")
    out, _ = demo
    meta = {split: json.loads((out / split / "fdf_metainfo.json").read_text()) for split in ("train", "val")}
    card = hub.DatasetCard.load(out / "README.md")
    # the Hub's identifiers of the demo's licenses, written down; CC BY-SA 2.0 has none: "other", named
    hub_ids = {"by": "cc-by-2.0", "by-sa": "other", "by-nc": "cc-by-nc-2.0", "by-nc-sa": "cc-by-nc-sa-2.0"}
    titles = {m["photo_title"] for faces in meta.values() for m in faces.values()}
    codes = {code for name, code in DEMO_LICENSE.items() if name.rsplit(".", 1)[0].replace("_", " ") in titles}
    assert sorted(card.data.license) == sorted({hub_ids[c] for c in codes})
    assert card.data.size_categories == ["n<1K"]
    assert card_faces(out) == {split: len(faces) for split, faces in meta.items()}


def test_readme_quotes_the_summary_the_demo_prints(demo):
    readme = (REPO / "README.md").read_text()
    quoted = re.search(r"The demo ends with a summary like this.*?\n```\n(.*?)```", readme, re.S)
    assert quoted, "README: the quoted demo summary is missing"
    printed = demo[1].splitlines()
    for line in quoted.group(1).splitlines():
        assert line in printed, f"README quotes {line!r}; the demo printed:\n" + "\n".join(printed[-8:])


def test_demo_summary_counts_the_annotated_faces(demo):
    """Every figure of the summary from the annotations: faces found, dropped as too small (annotated side < 64 px),
    kept, per split (by the owners written down in val); photos fetched, removed, without faces."""
    out, output = demo
    annotated = demo_annotations()
    faces = [f for photo in annotated.values() for f in photo]
    found = len(faces) + sum(UNANNOTATED_DETECTIONS.values())
    kept = sum(f.kept for f in faces)
    val = sum(f.kept for f in faces if f.photo in VAL_PHOTOS)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["faces"] == {"found": found, "too_small": found - kept, "kept": kept, "unmatched": 0}
    assert stats["splits"] == {"train": kept - val, "val": val}
    # demo.py adds one removed photo (the placeholder redirect), a video, a NoDerivs photo and an opted-out one
    assert stats["photos"] == {"tried": len(annotated) + 1, "fetched": len(annotated)}
    assert stats["skipped"] == {"photo_removed": 1, "no_face": sum(not photo for photo in annotated.values())}
    assert stats["selection"]["rejected"] == {"video": 1, "license_not_allowed": 1, "opted_out": 1}
    assert (f"faces: {found} found, {found - kept} dropped as too small, {kept} kept: {kept - val} train, {val} val"
            in output.splitlines())
    assert (found, found - kept, kept - val, val) == (17, 6, 8, 3)  # the README's figures, written down once


def test_demo_keeps_each_annotated_face_large_enough_and_nothing_else(demo):
    """Each kept face is an annotated face of its own photo whose annotated box is >= 64 px, kept once, in its
    owner's split and under its photo's license; and every such face is kept."""
    out, _ = demo
    annotated = demo_annotations()
    photo_of_title = {name.rsplit(".", 1)[0].replace("_", " "): name for name in annotated}
    seen = []
    for split in ("train", "val"):
        for key, m in json.loads((out / split / "fdf_metainfo.json").read_text()).items():
            photo, box = photo_of_title[m["photo_title"]], m["original_bounding_box"]
            face = max(annotated[photo], key=lambda f: iou(f.box, box), default=None)
            assert face is not None and iou(face.box, box) >= 0.5, f"{split}/{key}: no annotated face of {photo}"
            assert face.kept, f"{split}/{key}: face {face.index} of {photo} is annotated under 64 px"
            assert split == ("val" if photo in VAL_PHOTOS else "train"), f"{split}/{key}: {photo}"
            assert m["license_url"] == f"http://creativecommons.org/licenses/{DEMO_LICENSE[photo]}/2.0/"
            seen.append((photo, face.index))
    assert sorted(seen) == sorted((f.photo, f.index) for photo in annotated.values() for f in photo if f.kept)
