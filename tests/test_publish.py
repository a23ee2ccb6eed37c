"""Publishing a dataset: near-duplicate copies of real photos under other owners found and kept out of the other
split, and a dataset card that the Hub's own parser reads with the dataset's true counts, before and after a removal.

The dataset is built by the installed ``fdf-build`` from a generated YFCC metadata file whose photos a local
server serves: five of the demo photos (a crowd of helmeted cyclists among them) and, under other owners whose
NSIDs hash into the other split, copies of each made with a real transform.
"""

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import numpy as np
import pytest

from fdf_build.dataset.metainfo import read_metainfo
from fdf_build.files import atomic_write
from fdf_build.localserver import LocalServer
from fdf_build.sources.metadata import format_line
from fdf_build.sources.synthetic import synthetic_photo
from fdf_build.split import split_of

from .conftest import DEMO_DATA
from .browser import browser, needs_browser  # noqa: F401 (a fixture)
from .datasets import card_faces

hub = pytest.importorskip("huggingface_hub", reason="the test extra is not installed: pip install -e '.[test]'")

VAL_FRACTION = 0.026


def reencoded(rgb, quality=50):
    return cv2.imdecode(cv2.imencode(".jpg", rgb, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_COLOR)


def resized(rgb, scale=0.75):
    return cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def cropped(rgb, share=0.05):
    h, w = rgb.shape[:2]
    return rgb[round(h * share):h - round(h * share), round(w * share):w - round(w * share)]


def recoloured(rgb, gain=0.8, bias=0.0):
    return np.clip(rgb.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)


#: original demo photo, its owner, the transform of its copy, the copy's owner (in the other split)
PHOTOS = [
    ("codait_luciano.jpg", "90000362@N00", resized, "91000000@N01"),
    ("pexels_tennis_player.jpg", "91000001@N01", reencoded, "91000011@N01"),
    ("pexels_woman_turned.jpg", "91000002@N01", cropped, "91000018@N01"),
    ("whitehouse_obama_biden.jpg", "90000311@N00", recoloured, "91000003@N01"),
    ("pexels_cyclists.jpg", "91000004@N01", lambda rgb: recoloured(rgb, 1.2, 15), "91000149@N01"),
]
LICENSES = ("by", "by-sa", "by-nc", "by-nc-sa")


def fdf_build(*args, check=True) -> subprocess.CompletedProcess:
    """The installed console script, as a user runs it."""
    result = subprocess.run([str(Path(sys.executable).parent / "fdf-build"), *map(str, args)], capture_output=True,
                            text=True, timeout=300)
    assert not check or result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """(metadata file, local server URL, dataset root) of the originals-and-copies build; copies upload later."""
    root = tmp_path_factory.mktemp("publish")
    records, routes = [], {}
    for i, (name, owner, transform, copy_owner) in enumerate(PHOTOS):
        original = cv2.imread(str(DEMO_DATA / name))
        copy = cv2.imencode(".jpg", transform(original), [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()
        for k, (nsid, data) in enumerate(((owner, (DEMO_DATA / name).read_bytes()), (copy_owner, copy))):
            assert split_of(nsid, VAL_FRACTION) == ("val" if (k == 0) == (owner.startswith("90000")) else "train")
            photo = synthetic_photo(2 * i + k, nsid=nsid, license=LICENSES[(i + k) % 4], title=f"{name} #{k}",
                                    date_uploaded=str(1_300_000_000 + k * 10_000_000 + i))
            records.append(photo)
            routes[urlsplit(photo.download_url).path] = data
    tsv = root / "yfcc100m_sample.tsv"
    atomic_write(tsv, "".join(format_line(p) + "\n" for p in records))
    with LocalServer(routes) as server:
        fdf_build("build", tsv, "--out", root / "dataset", "--base-url", server.url, "--workers", 4)
    return tsv, records, root / "dataset"


def copy_of(dataset: Path, to: Path) -> Path:
    shutil.copytree(dataset, to, symlinks=True)
    return to


def faces_by_photo(dataset: Path) -> dict:
    """(split, image) -> (photo_id, original box) of every face."""
    return {(split, int(n)): (r.photo_id, np.array(r.original_bounding_box))
            for split in ("train", "val") for n, r in read_metainfo(dataset / split).items()}


def groups_of(dataset: Path) -> list[list[tuple[str, int]]]:
    result = fdf_build("duplicates", dataset, "--json")
    return [[(f["split"], f["image"]) for f in json.loads(line)["faces"]] for line in result.stdout.splitlines()]


def test_copies_under_other_owners_are_found_across_splits(published):
    _, records, dataset = published
    faces = faces_by_photo(dataset)
    photo_index = {p.photo_id: i for i, p in enumerate(records)}
    groups = groups_of(dataset)
    grouped = {face for group in groups for face in group}
    for group in groups:
        # one face of an original photo and the same face of its copy: never two faces of one crowd
        photos = sorted(photo_index[faces[f][0]] for f in group)
        assert len(group) == 2 and photos[0] % 2 == 0 and photos[1] == photos[0] + 1, group
        assert len({split for split, _ in group}) == 2  # the copy's owner hashes into the other split
    # every face kept from a copy is grouped with its original's face, where that was kept too
    for face, (photo_id, box) in faces.items():
        i = photo_index[photo_id]
        if i % 2 and any(photo_index[p] == i - 1 for p, _ in faces.values()):
            assert face in grouped, (records[i].title, face)
    assert len(groups) >= len(PHOTOS)
    hashes = np.load(dataset / "val" / "phash.npy")
    meta = read_metainfo(dataset / "val")
    assert [f"{h:016x}" for h in hashes[:, 0]] == [meta[str(n)].phash for n in range(len(meta))]


def test_a_copy_without_phash_npy_has_its_images_hashed_to_the_same_groups(published, tmp_path):
    _, _, built = published
    dataset = copy_of(built, tmp_path / "published_copy")
    for split in ("train", "val"):
        (dataset / split / "phash.npy").unlink()  # as in a published FDF256 copy
    assert groups_of(dataset) == groups_of(built) != []


def test_dedup_keeps_the_earliest_upload_of_each_group_in_one_split(published, tmp_path):
    tsv, records, built = published
    groups = groups_of(built)
    faces = faces_by_photo(built)
    originals = sorted(faces[f][0] for group in groups for f in group if (faces[f][0] - records[0].photo_id) % 2 == 0)
    dataset = copy_of(built, tmp_path / "dataset")
    result = fdf_build("build", tsv, "--out", dataset, "--dedup")  # every shard is done: only the merge runs again
    assert f"{len(groups)} left out as near-duplicates ({len(groups)} groups" in result.stdout
    assert groups_of(dataset) == []
    kept = faces_by_photo(dataset)
    assert len(kept) == len(faces) - len(groups)
    assert sorted(kept[f][0] for f in kept if kept[f][0] in originals) == originals
    card = hub.DatasetCard.load(dataset / "README.md")
    assert f"left {len(groups):,} out" in card.text


def test_the_card_is_read_by_the_hub_with_the_dataset_counts_and_licenses(published, tmp_path):
    _, records, built = published
    dataset = copy_of(built, tmp_path / "dataset")
    meta = {split: read_metainfo(dataset / split) for split in ("train", "val")}
    card = hub.DatasetCard.load(dataset / "README.md")
    present = {r.license_url for split in meta.values() for r in split.values()}
    hub_ids = {"by": "cc-by-2.0", "by-nc": "cc-by-nc-2.0", "by-nc-sa": "cc-by-nc-sa-2.0", "by-sa": "other"}
    assert sorted(card.data.license) == sorted({hub_ids[url.rstrip("/").split("/")[-2]] for url in present})
    assert card.data.license_name == "Attribution-ShareAlike License"  # CC BY-SA 2.0 has no Hub identifier
    assert card.data.size_categories == ["n<1K"] and card.data.pretty_name
    assert card_faces(dataset) == {split: len(m) for split, m in meta.items()}
    owners = sorted({r.user_nsid for m in meta.values() for r in m.values()})
    assert f"{len(owners)} Flickr users" in card.text

    before = card_faces(dataset)
    # a maintainer's own metadata, title and section survive; a removal changes the counts
    text = (dataset / "README.md").read_text()
    text = text.replace("---\n\n", "homepage: https://example.org/faces\n---\n\n## Contact\n\nfaces@example.org\n\n", 1)
    text = text.replace("pretty_name:", "pretty_name: \"Our faces\"\nold_pretty_name:", 1)
    atomic_write(dataset / "README.md", text)
    gone = max(owners, key=lambda o: sum(r.user_nsid == o for m in meta.values() for r in m.values()))
    fdf_build("remove", dataset, "--user-nsid", gone)
    after = {split: read_metainfo(dataset / split) for split in ("train", "val")}
    card = hub.DatasetCard.load(dataset / "README.md")
    assert card_faces(dataset) == {split: len(m) for split, m in after.items()} != before
    assert f"{len(owners) - 1} Flickr users" in card.text
    assert card.data.pretty_name == "Our faces" and card.data.homepage == "https://example.org/faces"
    assert card.text.count("## Contact\n\nfaces@example.org") == 1
    removed = sum(len(m) for m in meta.values()) - sum(len(m) for m in after.values())
    assert f"Removed so far: {removed} face(s)" in card.text


@needs_browser
def test_the_report_in_a_browser(published, tmp_path, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _, _, dataset = published
    groups = groups_of(dataset)
    page = fdf_build("report", dataset, "--out", tmp_path / "report").stdout.split("report: ", 1)[1].strip()
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["index.html"]  # one self-contained file
    browser.set_window_size(1280, 900)
    browser.get(Path(page).resolve().as_uri())
    WebDriverWait(browser, 30).until(lambda d: d.execute_script(
        "return document.readyState === 'complete' && Array.from(document.images).every(i => i.complete)"))
    assert browser.title == f"{dataset.name}: dataset report" and str(dataset.parent) not in browser.page_source
    images = browser.find_elements(By.TAG_NAME, "img")
    assert images and all(browser.execute_script("return arguments[0].naturalWidth", i) > 0 for i in images)
    meta = {split: read_metainfo(dataset / split) for split in ("train", "val")}
    first = browser.find_element(By.CSS_SELECTOR, ".stat b").text
    assert first == f"{sum(len(m) for m in meta.values()):,}"  # the card's numbers on top
    # charts side by side, each wide enough to read
    charts = [c.rect for c in browser.find_elements(By.CSS_SELECTOR, ".charts figure")]
    assert len(charts) >= 5 and all(c["width"] >= 400 for c in charts) and len({c["y"] for c in charts}) < len(charts)
    # every duplicate group shown with both faces, which sit in both splits
    shown = browser.find_elements(By.CSS_SELECTOR, ".group")
    assert len(shown) == len(groups) and all(len(g.find_elements(By.TAG_NAME, "img")) == 2 for g in shown)
    # the sample grid: whole rows, no empty cell
    tiles = [t.rect for t in browser.find_elements(By.CSS_SELECTOR, ".samples figure")]
    rows = Counter(t["y"] for t in tiles)
    assert tiles and len(set(rows.values())) == 1
    browser.set_window_size(1280, browser.execute_script("return document.body.scrollHeight") + 100)
    assert browser.save_screenshot(str(tmp_path / "report.png"))
