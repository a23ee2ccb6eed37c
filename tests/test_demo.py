"""The offline demo shows the whole product: faces in both splits, split by the real rule, and the summary the
README quotes."""

import json
import re

import pytest
from click.testing import CliRunner

from fdf_build.cli import cli
from fdf_build.config import DEFAULT_VAL_FRACTION
from fdf_build.demo import DEMO_VAL_OWNERS, demo_metadata, demo_photos
from fdf_build.split import split_of

from .conftest import REPO


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo"
    result = CliRunner().invoke(cli, ["demo", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, result.stdout  # without the progress bars, which go to stderr


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


def test_readme_quotes_the_summary_the_demo_prints(demo):
    readme = (REPO / "README.md").read_text()
    quoted = re.search(r"The demo ends with a summary like this.*?\n```\n(.*?)```", readme, re.S)
    assert quoted, "README: the quoted demo summary is missing"
    printed = demo[1].splitlines()
    for line in quoted.group(1).splitlines():
        assert line in printed, f"README quotes {line!r}; the demo printed:\n" + "\n".join(printed[-8:])
