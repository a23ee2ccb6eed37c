"""The face record: FDF's published metainfo form, older builds' form, and what builds write now."""

import dataclasses
import json

import numpy as np
import pytest

from fdf_build.dataset.metainfo import FaceRecord, crawl_date_form, read_metainfo, upload_date
from fdf_build.errors import DatasetError
from fdf_build.flickr import photo_id_from_url

# an entry as FDF's README ("Metainfo") documents it, plus user_nsid, with real-looking values
PUBLISHED = {
    "author": "someone",
    "bounding_box": [0.21, 0.2, 0.79, 0.8],
    "category": "validation",
    "date_crawled": "2019-3-6",
    "date_taken": "2010-01-16 21:47:59.0",
    "date_uploaded": "2010-01-16",
    "landmark": [[0.5, 0.5], [0.6, 0.4], [0.4, 0.4], [0.7, 0.45], [0.3, 0.45], [0.9, 0.95], [0.1, 0.95]],
    "license": "Attribution-NonCommercial License",
    "license_url": "http://creativecommons.org/licenses/by-nc/2.0/",
    "original_bounding_box": [100, 120, 220, 260],
    "original_landmark": [[160, 190]] * 7,
    "photo_title": "a title",
    "photo_url": "http://www.flickr.com/photos/12345678@N00/4279482917/",
    "yfcc100m_line_idx": "15",
    "user_nsid": "12345678@N00",
}


def test_reads_fdfs_published_form_and_writes_it_back_with_the_photo_id_beside():
    r = FaceRecord.from_json("7", PUBLISHED)
    assert (r.image, r.photo_id, r.yfcc100m_line_idx, r.split) == (7, 4279482917, 15, "val")
    assert r.download_url == "" and r.face_index is None
    np.testing.assert_array_equal(r.landmark_array()[0], [0.5, 0.5])
    out = r.to_json()
    assert {k: out[k] for k in PUBLISHED} == {
        **PUBLISHED,
        "original_bounding_box": [100.0, 120.0, 220.0, 260.0],
        "original_landmark": [[160.0, 190.0]] * 7,
    }
    assert set(out) - set(PUBLISHED) == {"photo_id"}
    assert FaceRecord.from_json("7", out) == r


def test_a_static_url_under_photo_url_moves_to_download_url_and_the_page_is_built():
    entry = dict(PUBLISHED, photo_url="http://farm5.staticflickr.com/4025/4279482917_0a1b2c3d4e.jpg")
    r = FaceRecord.from_json("0", entry)
    assert r.photo_id == 4279482917
    assert r.download_url == entry["photo_url"]
    assert r.photo_url == "http://www.flickr.com/photos/12345678@N00/4279482917/"


def test_missing_fields_are_tolerated_and_not_invented():
    r = FaceRecord.from_json("3", {"user_nsid": "a@N01", "photo_url": "https://flic.kr/p/2"})
    assert (r.user_nsid, r.photo_id, r.author, r.bounding_box, r.landmark) == ("a@N01", 1, "", None, None)
    assert np.isnan(r.landmark_array()).all() and r.landmark_array().shape == (7, 2)
    assert FaceRecord.from_json("3", {}).photo_id is None
    assert FaceRecord.from_json("3", {}, split="train").category == "training"


def test_reads_the_form_older_builds_wrote():
    old = {
        "author": "x", "category": "face", "date_uploaded": "1338552000", "yfcc100m_line_idx": 4,
        "photo_url": "http://farm8.staticflickr.com/7038/6985418911_aa.jpg",
        "page_url": "http://www.flickr.com/photos/b@N02/6985418911/", "photo_id": 6985418911,
        "landmark": [[0.5, 0.5], None, None, None, None, None, None], "keypoints_missing": ["left_eye"],
        "something_new": {"kept": True},
    }
    r = FaceRecord.from_json("0", old, split="train")
    assert r.category == "training" and r.date_uploaded == "2012-06-01" and r.yfcc100m_line_idx == 4
    assert r.photo_url == old["page_url"] and r.download_url == old["photo_url"]
    assert r.landmark[1] is None and r.keypoints_missing == ("left_eye",)
    out = r.to_json()
    assert "page_url" not in out and out["something_new"] == {"kept": True} and out["yfcc100m_line_idx"] == "4"


def test_value_forms_of_dates():
    assert upload_date("1263678479") == "2010-01-16"
    assert upload_date("2010-01-16") == "2010-01-16" and upload_date("") == ""
    assert crawl_date_form("2019-03-06") == "2019-3-6" and crawl_date_form("2019-3-6") == "2019-3-6"
    assert crawl_date_form("yesterday") == "yesterday"


@pytest.mark.parametrize("url, expected", [
    ("http://www.flickr.com/photos/12345678@N00/4279482917/", 4279482917),
    ("https://www.flickr.com/photos/alias/4279482917", 4279482917),
    ("http://farm5.staticflickr.com/4025/4279482917_0a1b2c3d4e_z.jpg", 4279482917),
    ("https://live.staticflickr.com/65535/52_abcdef0123_o.png", 52),
    ("https://flic.kr/p/2", 1),
    ("https://flic.kr/p/kb", 19 * 58 + 10),  # base58: k is the 20th digit, b the 11th
    ("https://flic.kr/p/l", None),  # l is not a base58 digit (it was a ValueError)
    ("https://example.com/x.jpg", None),
    ("", None),
])
def test_photo_id_from_any_flickr_url(url, expected):
    assert photo_id_from_url(url) == expected


def test_read_metainfo_takes_the_split_from_the_directory(tmp_path):
    split = tmp_path / "train"
    split.mkdir()
    (split / "fdf_metainfo.json").write_text(json.dumps({"0": dict(PUBLISHED, category="face"), "1": PUBLISHED}))
    records = read_metainfo(split)
    assert [records[k].category for k in ("0", "1")] == ["training", "validation"]
    assert read_metainfo(split / "fdf_metainfo.json") == records
    changed = dataclasses.replace(records["0"], author="other")
    assert changed.author == "other" and records["0"].author == "someone"
    (split / "fdf_metainfo.json").write_text("[]")
    with pytest.raises(DatasetError, match="not a valid fdf_metainfo.json .a JSON list, not an object"):
        read_metainfo(split)
