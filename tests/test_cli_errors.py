"""Bad input gets one clear line and exit status 2 from every command, an output it cannot write one line and 1,
never a traceback."""

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner

from fdf_build.cli.download import download_command
from fdf_build.cli.main import cli
from fdf_build.cli.options import HttpUrl
from fdf_build.dataset.metainfo import read_metainfo
from fdf_build.demo import demo_metadata, demo_photos
from fdf_build.localserver import PLACEHOLDER_PATH, LocalServer, Redirect
from fdf_build.lock import LOCK
from fdf_build.sources.metadata import format_line

from .conftest import DEMO_DATA
from .datasets import make_dataset

OWNERS = [f"owner{i}@N0{i % 3}" for i in range(6)]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("pristine") / "dataset", OWNERS)


@pytest.fixture
def dataset(pristine, tmp_path):
    return shutil.copytree(pristine, tmp_path / "dataset")


def malformed_metainfo(root):
    path = root / "train" / "fdf_metainfo.json"
    path.write_text(path.read_text()[:-40])  # cut short, as a killed copy leaves it
    return path


def missing_png(root):
    path = root / "train" / "images" / "1.png"
    path.unlink()
    return path


def unreadable_png(root):
    path = root / "train" / "images" / "0.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    return path


def missing_landmarks(root):
    path = root / "train" / "landmarks.npy"
    path.unlink()
    return path


# (command, damage, what the one line says); pack copies PNG bytes as they are, so it cares only that they exist
CASES = [
    *[(command, malformed_metainfo, "not a valid fdf_metainfo.json") for command in ("audit", "attributes", "report",
                                                                                     "pack")],
    ("attributes", missing_png, "missing"), ("report", missing_png, "missing"),
    ("pack", missing_png, "not a consistent FDF dataset, not packed: {dir}/images: 1 image(s) missing"),
    ("attributes", unreadable_png, "not a readable image"), ("report", unreadable_png, "not a readable image"),
    ("attributes", missing_landmarks, "no such file"), ("report", missing_landmarks, "no such file"),
    ("pack", missing_landmarks, "not a consistent FDF dataset, not packed: {path}: missing"),
]


@pytest.mark.parametrize("command,damage,says", CASES, ids=[f"{c}-{d.__name__}" for c, d, _ in CASES])
def test_a_damaged_dataset_is_one_line_and_exit_2(command, damage, says, dataset, tmp_path):
    path = damage(dataset)
    extra = {"audit": ["--base-url", "http://127.0.0.1:9"], "report": ["--out", str(tmp_path / "report")],
             "pack": ["--out", str(tmp_path / "mirror")]}.get(command, [])
    result = CliRunner().invoke(cli, [command, str(dataset), *extra])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert says.format(path=path, dir=dataset / "train") in errors[0], errors[0]
    assert str(path) in errors[0] or damage is missing_png and command == "pack", errors[0]  # pack names the folder
    if command == "pack":
        assert not (tmp_path / "mirror").exists()  # nothing half-packed to host


@pytest.mark.parametrize("command", ["attributes", "report", "pack"])
def test_the_undamaged_dataset_passes_the_same_commands(command, dataset, tmp_path):
    extra = {"report": ["--out", str(tmp_path / "report")], "pack": ["--out", str(tmp_path / "mirror")]}
    result = CliRunner().invoke(cli, [command, str(dataset), *extra.get(command, [])])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("text", ['{"files": [{"name": "a.zip"', '[1, 2]',
                                  '{"files": [{"name": "../a.zip", "url": "x", "md5": "0"}]}'])
def test_a_malformed_manifest_is_one_line_and_exit_2(text, tmp_path):
    (tmp_path / "manifest.json").write_text(text)
    args = [str(tmp_path / "copy"), "--manifest", str(tmp_path / "manifest.json"), "--base-url", "http://127.0.0.1:9"]
    result = CliRunner().invoke(download_command, args)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and ("not a manifest" in errors[0] or "plain file name" in errors[0]), errors
    assert not (tmp_path / "copy").exists()


# ---------------------------------------------------------------- every command, every kind of bad input or output
#
# One rule for every command (fdf_build/cli/__init__.py, one_line_errors): one line on stderr, never a traceback;
# exit 2 for input a command cannot use (a folder with no dataset, a file that does not decode, a model that does
# not load), 1 for an output that cannot be written. Each command is walked with each kind it can meet.

UNWRITABLE = Path("/proc/nope")  # /proc takes no new entry, even from root


@dataclass
class World:
    """What the walk's cases point at; each case gets its own copy of the datasets."""

    dataset: Path  # a good dataset (tests/datasets.py)
    build: Path  # a finished build: the demo's (retry-failed needs one)
    empty: Path  # a folder with no dataset in it
    jpeg: Path  # a real photo, where text or JSON belongs
    tsv: Path  # a good YFCC metadata file
    manifest: Path
    weights: Path  # a folder without the reference weights
    gone: str  # a server that says every photo of the dataset is gone (Flickr's placeholder redirect)
    server: str = "http://127.0.0.1:9"  # nothing listens there


def locked(root: Path) -> Path:
    """The dataset cannot be changed: its lock is a folder where a file must go (no chmod stops root)."""
    (root / LOCK).unlink(missing_ok=True)
    (root / LOCK).mkdir()
    return root


def metadata_only(root: Path) -> Path:
    """A build as a metadata-only copy (rehydrate's input) whose images folder cannot be made: a file is there."""
    for split in ("train", "val"):
        shutil.rmtree(root / split / "images")
        (root / split / "images").write_bytes(b"")
    return root


def attributes_blocked(root: Path) -> Path:
    """train/attributes.jsonl is a folder: the file cannot be put in place."""
    (root / "train" / "attributes.jsonl").mkdir()
    return root


def bad_metainfo(root: Path) -> Path:
    """The dataset's train/fdf_metainfo.json cut short; returns that file."""
    return malformed_metainfo(root)


# (command, kind) -> (args, exit status, what the line names); the lambdas get the World
WALK = {
    ("scan", "undecodable"): lambda w: (["scan", w.jpeg], 2, w.jpeg),
    ("build", "undecodable"): lambda w: (["build", w.jpeg, "--out", w.empty / "o"], 2, w.jpeg),
    ("build", "undecodable blocklist"): lambda w: (["build", w.tsv, "--out", w.empty / "o", "--blocklist", w.jpeg],
                                                   2, w.jpeg),
    ("build", "bad model"): lambda w: (["build", w.tsv, "--out", w.empty / "o", "--keypoints", "keypointrcnn",
                                        "--weights-dir", w.weights], 2, w.weights),
    ("build", "unwritable"): lambda w: (["build", w.tsv, "--out", UNWRITABLE], 1, UNWRITABLE),
    ("retry-failed", "missing dataset"): lambda w: (["retry-failed", w.empty], 2, w.empty),
    ("retry-failed", "unwritable"): lambda w: (["retry-failed", locked(w.build)], 1, w.build),
    ("demo", "bad model"): lambda w: (["demo", "--out", w.empty / "o", "--keypoints", "keypointrcnn"], 2,
                                      w.weights),
    ("demo", "unwritable"): lambda w: (["demo", "--out", UNWRITABLE], 1, UNWRITABLE),
    ("detect", "undecodable"): lambda w: (["detect", w.tsv], 2, w.tsv),
    ("features", "missing dataset"): lambda w: (["features", w.empty, "--out", w.empty / "o"], 2, w.empty),
    ("features", "undecodable"): lambda w: (["features", w.tsv, "--out", w.empty / "o", "--no-parsing"], 2, w.tsv),
    ("features", "unwritable"): lambda w: (["features", w.jpeg, "--out", UNWRITABLE / "o"], 1, UNWRITABLE),
    ("detect", "bad model"): lambda w: (["detect", w.jpeg, "--keypoints", "keypointrcnn", "--weights-dir",
                                         w.weights], 2, w.weights),
    ("pack", "missing dataset"): lambda w: (["pack", w.empty, "--out", w.empty / "m"], 2, w.empty),
    ("pack", "undecodable"): lambda w: (["pack", w.dataset, "--out", w.empty / "m"], 2, bad_metainfo(w.dataset)),
    ("pack", "unwritable"): lambda w: (["pack", w.dataset, "--out", UNWRITABLE], 1, UNWRITABLE),
    ("export", "missing dataset"): lambda w: (["export", w.empty, "--format", "webdataset", "--out", w.empty / "x"],
                                              2, w.empty),
    ("export", "undecodable"): lambda w: (["export", w.dataset, "--format", "parquet", "--out", w.empty / "x"], 2,
                                          bad_metainfo(w.dataset)),
    ("export", "unwritable"): lambda w: (["export", w.dataset, "--format", "stylegan", "--out", UNWRITABLE], 1,
                                         UNWRITABLE),
    ("verify", "missing dataset"): lambda w: (["verify", w.empty], 2, w.empty),
    # verify's own answer: a dataset it can read but finds broken is a failed check (1), as `md5sum -c` says
    ("verify", "undecodable"): lambda w: (["verify", bad_metainfo(w.dataset).parents[1]], 1, w.dataset),
    ("rehydrate", "missing dataset"): lambda w: (["rehydrate", w.empty], 2, w.empty),
    ("rehydrate", "undecodable"): lambda w: (["rehydrate", w.build], 2, bad_metainfo(w.build)),
    ("rehydrate", "unwritable"): lambda w: (["rehydrate", metadata_only(w.build)], 1, w.build / "train" / "images"),
    ("attributes", "missing dataset"): lambda w: (["attributes", w.empty], 2, w.empty),
    ("attributes", "undecodable"): lambda w: (["attributes", w.dataset], 2, bad_metainfo(w.dataset)),
    ("attributes", "bad model"): lambda w: (["attributes", w.dataset, "--attribute-model", w.jpeg], 2, w.jpeg),
    ("attributes", "unwritable"): lambda w: (["attributes", attributes_blocked(w.dataset)], 1, w.dataset),
    ("duplicates", "missing dataset"): lambda w: (["duplicates", w.empty], 2, w.empty),
    ("duplicates", "undecodable"): lambda w: (["duplicates", w.dataset], 2, bad_metainfo(w.dataset)),
    ("report", "missing dataset"): lambda w: (["report", w.empty, "--out", w.empty / "r"], 2, w.empty),
    ("report", "undecodable"): lambda w: (["report", w.dataset, "--out", w.empty / "r"], 2,
                                          bad_metainfo(w.dataset)),
    ("report", "unwritable"): lambda w: (["report", w.dataset, "--out", UNWRITABLE], 1, UNWRITABLE),
    ("remove", "missing dataset"): lambda w: (["remove", w.empty, "--user-nsid", OWNERS[0]], 2, w.empty),
    ("remove", "undecodable"): lambda w: (["remove", w.dataset, "--user-nsid", OWNERS[0]], 2,
                                          bad_metainfo(w.dataset)),
    ("remove", "undecodable nsid file"): lambda w: (["remove", w.dataset, "--nsid-file", w.jpeg], 2, w.jpeg),
    ("remove", "undecodable requests"): lambda w: (["remove", w.dataset, "--requests", w.jpeg], 2, w.jpeg),
    ("remove", "unwritable"): lambda w: (["remove", locked(w.dataset), "--user-nsid", OWNERS[0]], 1, w.dataset),
    ("audit", "missing dataset"): lambda w: (["audit", w.empty, "--base-url", w.server], 2, w.empty),
    ("audit", "undecodable"): lambda w: (["audit", w.dataset, "--base-url", w.server], 2, bad_metainfo(w.dataset)),
    ("audit", "unwritable"): lambda w: (["audit", locked(w.dataset), "--apply", "--base-url", w.gone], 1,
                                        w.dataset),
    ("serve", "missing dataset"): lambda w: (["serve", w.empty], 2, w.empty),
    ("serve", "undecodable"): lambda w: (["serve", w.dataset], 2, bad_metainfo(w.dataset)),
    ("serve", "unwritable"): lambda w: (["serve", w.dataset, "--requests", UNWRITABLE / "q.jsonl"], 1, UNWRITABLE),
    ("download", "missing dataset"): lambda w: (["download", w.empty, "--manifest", w.manifest, "--verify-only"], 2,
                                                w.empty),
    ("download", "undecodable"): lambda w: (["download", w.empty / "c", "--manifest", w.jpeg], 2, w.jpeg),
    ("download", "unwritable"): lambda w: (["download", UNWRITABLE, "--manifest", w.manifest, "--base-url",
                                            w.server], 1, UNWRITABLE),
    ("search", "missing dataset"): lambda w: (["search", w.empty, "--user_nsid", OWNERS[0]], 2, w.empty),
    ("search", "undecodable"): lambda w: (["search", w.jpeg, "--user_nsid", OWNERS[0]], 2, w.jpeg),
    ("search", "undecodable nsid file"): lambda w: (["search", w.dataset, "--nsid-file", w.jpeg], 2, w.jpeg),
}
#: the kinds a command cannot meet, and why
NOT_MET = {
    "missing dataset": {"scan", "build", "demo", "detect"},  # no dataset among their inputs (a missing FILE: click)
    "bad model": {"scan", "retry-failed", "pack", "verify", "rehydrate", "report", "remove", "audit", "serve",
                  "download", "search", "duplicates", "export",
                  "features"},  # they run no model (retry-failed: the build's own; features: no model option)
    # they write nothing (search: its index falls back to the user's cache)
    "unwritable": {"scan", "detect", "verify", "search", "duplicates"},
    # retry-failed reads the build's own files (.work/build.json, shards): their loaders' tests; demo reads nothing
    "undecodable": {"retry-failed", "demo"},
}
KINDS = ("missing dataset", "undecodable", "bad model", "unwritable")


def test_the_walk_covers_every_command_and_kind():
    walked = {(command, kind.split(" ")[0] if kind.startswith("undecodable") else kind) for command, kind in WALK}
    for kind in KINDS:
        for command in cli.commands:
            assert ((command, kind) in walked) != (command in NOT_MET[kind]), (command, kind)


@pytest.fixture(scope="module")
def world_parts(tmp_path_factory, pristine, demo_server):
    base = tmp_path_factory.mktemp("walk")
    records, _ = demo_metadata(demo_photos())
    (base / "demo.tsv").write_text("".join(format_line(p) + "\n" for p in records))
    (base / "manifest.json").write_text(json.dumps({"files": [{"name": "metainfo.zip", "url": "metainfo.zip",
                                                                "md5": "0" * 32}]}))
    photos = [urlsplit(r.download_url).path for split in ("train", "val") if (pristine / split).is_dir()
              for r in read_metainfo(pristine / split).values()]
    routes = {path: Redirect(PLACEHOLDER_PATH) for path in photos}
    with LocalServer({**routes, PLACEHOLDER_PATH: b"png"}, max_seconds=300) as gone:
        yield base, demo_server.out, gone.url


@pytest.fixture
def world(world_parts, pristine, tmp_path, monkeypatch):
    base, build, gone = world_parts
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # reference weights looked for here: none
    (tmp_path / "empty").mkdir()
    return World(dataset=shutil.copytree(pristine, tmp_path / "dataset"),
                 build=shutil.copytree(build, tmp_path / "build", symlinks=True), empty=tmp_path / "empty",
                 jpeg=DEMO_DATA / "codait_luciano.jpg", tsv=base / "demo.tsv", manifest=base / "manifest.json",
                 weights=tmp_path / "torch" / "hub" / "checkpoints", gone=gone)


@pytest.mark.parametrize("case", sorted(WALK), ids=[f"{c}-{k}" for c, k in sorted(WALK)])
def test_every_command_says_one_line_and_exits_by_the_rule(case, world):
    if case[0] == "serve":  # without its extra, serve says which to install (.ci/python313 runs without it)
        pytest.importorskip("fdf_build.privacy.serve", reason="the serve extra is not installed: pip install -e '.[serve]'")
    args, status, named = WALK[case](world)
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit), result.output
    assert result.exit_code == status, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert str(named) in errors[0] or str(named.name) in errors[0], errors[0]


def url_options():
    for name, command in sorted(cli.commands.items()):
        for param in command.params:
            if isinstance(param.type, HttpUrl):
                yield pytest.param(name, param.opts[0], id=f"{name} {param.opts[0]}")


@pytest.mark.parametrize("command,option", list(url_options()))
def test_a_server_address_without_its_scheme_is_refused_before_any_work(command, option, tmp_path):
    """`--base-url 127.0.0.1:8000` would make every request fail alike (request_error) after the work started."""
    assert command in {"build", "retry-failed", "rehydrate", "audit", "download"}
    args = {"build": [DEMO_DATA / "LICENSES.md", "--out", tmp_path / "o"]}.get(command, [tmp_path])
    result = CliRunner().invoke(cli, [command, option, "127.0.0.1:8000", *map(str, args)])
    assert result.exit_code == 2 and "is not an http:// or https:// URL" in result.stderr, result.output
    assert list(tmp_path.iterdir()) == []


def test_a_build_with_no_eligible_photo_says_why_and_exits_1(tmp_path):
    records, _ = demo_metadata(demo_photos())
    (tmp_path / "m.tsv").write_text("".join(format_line(p) + "\n" for p in records if "/licenses/by/" not in p.license_url))
    result = CliRunner().invoke(cli, ["build", str(tmp_path / "m.tsv"), "--out", str(tmp_path / "o"),
                                      "--licenses", "by"])
    assert result.exit_code == 1, result.output
    assert "metadata: " in result.stdout  # the summary first, then why
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "no eligible photo" in errors[0] and "license_not_allowed" in errors[0], errors


def test_a_build_whose_server_is_down_says_so_and_exits_1(tmp_path):
    records, _ = demo_metadata(demo_photos())
    (tmp_path / "m.tsv").write_text("".join(format_line(p) + "\n" for p in records))
    result = CliRunner().invoke(cli, ["build", str(tmp_path / "m.tsv"), "--out", str(tmp_path / "o"),
                                      "--base-url", "http://127.0.0.1:9", "--retries", "0", "--keypoints", "none"])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "no photo could be fetched: 10 of 10 failed with connection_error" in errors[0]
    assert f"fdf-build retry-failed {tmp_path / 'o'}" in errors[0]
