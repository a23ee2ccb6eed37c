"""A removal is final under concurrent commands: one dataset lock for build (its shard phase too), merge, remove,
retry-failed, rehydrate and downloads into a dataset; a build re-reads the removals before each photo; downloads
never write the ledger or the blocklist; pack copies no link. Real commands in real processes, real servers."""

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner

from fdf_build.cli.download import download_command
from fdf_build.cli.main import cli
from fdf_build.cli.search import search_command
from fdf_build.dataset.archive import pack
from fdf_build.dataset.layout import load_metainfo, verify_dataset
from fdf_build.demo import demo_photos
from fdf_build.localserver import Fault, LocalServer
from fdf_build.lock import LOCK
from fdf_build.sources.filters import Blocklist
from fdf_build.sources.metadata import format_line
from fdf_build.sources.synthetic import synthetic_photo

from .conftest import REPO
from .datasets import make_dataset

OWNERS = ["ann@N00", "bea@N01", "bea@N01", "cid@N02"]
BUILD = ["--val-fraction", "0", "--shard-size", "4", "--keypoints", "none", "--workers", "1",
         "--crawl-date", "2026-01-01"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Four real photos of three owners (bea has two), their routes, and a clean build of them."""
    data = demo_photos()
    names = ["whitehouse_obama_biden.jpg", "pexels_tennis_player.jpg", "pexels_cyclists.jpg", "codait_luciano.jpg"]
    photos = [synthetic_photo(i, nsid=nsid, license="by") for i, nsid in enumerate(OWNERS)]
    routes = {urlsplit(p.download_url).path: data[name] for p, name in zip(photos, names)}
    base = tmp_path_factory.mktemp("world")
    tsv = base / "yfcc.tsv"
    tsv.write_text("".join(format_line(p) + "\n" for p in photos))
    with LocalServer(routes, max_seconds=120) as server:
        result = CliRunner().invoke(cli, ["build", str(tsv), "--out", str(base / "clean"), "--base-url", server.url,
                                          *BUILD])
    assert result.exit_code == 0, result.output
    assert owners_in(base / "clean") == set(OWNERS)
    return tsv, routes, photos, base / "clean"


def face_bytes(dataset, nsid) -> set[bytes]:
    return {(dataset / s / "images" / f"{k}.png").read_bytes() for s in ("train", "val") if (dataset / s).is_dir()
            for k, m in load_metainfo(dataset / s).items() if m["user_nsid"] == nsid}


def every_file(root):
    """Every file under ``root``, hidden folders, shards and staging included."""
    return [p for p in root.rglob("*") if p.is_file()]


def holding(root, faces: set[bytes]) -> list[str]:
    digests = {hashlib.sha256(b).digest() for b in faces}
    return [str(p.relative_to(root)) for p in every_file(root) if hashlib.sha256(p.read_bytes()).digest() in digests]


def owners_in(out):
    return {m["user_nsid"] for s in ("train", "val") if (out / s).is_dir() for m in load_metainfo(out / s).values()}


def command(*args):
    return [sys.executable, "-m", "fdf_build", *map(str, args)]


class Stderr:
    """A process's stderr, read by a thread; ``wait_for(text)`` waits until a line holds it."""

    def __init__(self, process):
        self.lines, self.process, self._seen = [], process, threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stderr:
            with self._seen:
                self.lines.append(line)
                self._seen.notify_all()

    def wait_for(self, text, timeout=60) -> bool:
        with self._seen:
            return self._seen.wait_for(lambda: any(text in line for line in self.lines), timeout)


def test_a_removal_during_the_shard_phase_is_final(world, tmp_path):
    """`remove` while `build --restart` re-cuts the dataset's photos: the build takes none of the owner's photos
    from then on, and when both are done no byte of the owner's faces is anywhere under the dataset (shards too)."""
    tsv, routes, photos, clean = world
    bea = face_bytes(clean, "bea@N01")
    assert bea
    first = urlsplit(photos[0].download_url).path
    released = threading.Event()
    out = shutil.copytree(clean, tmp_path / "out")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with LocalServer(routes, {first: [Fault("stall", release=released)]}, max_seconds=120) as server:
        build = subprocess.Popen(command("build", tsv, "--out", out, "--base-url", server.url, "--restart", *BUILD),
                                 env=env,
                                 text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while not server.hits(first) and time.monotonic() < deadline:  # the build is in its shard phase
            time.sleep(0.05)
        remove = subprocess.Popen(command("remove", out, "--user-nsid", "bea@N01"), env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        remove_errors = Stderr(remove)
        assert remove_errors.wait_for("waiting"), remove_errors.lines  # its request is on the blocklist now
        assert "fdf-build build" in "".join(remove_errors.lines)  # it says what it waits for
        released.set()
        build_out, build_err = build.communicate(timeout=120)
        assert build.returncode == 0, build_err
        assert remove.wait(120) == 0, remove_errors.lines
        bea_paths = {urlsplit(p.download_url).path for p in photos if p.user_nsid == "bea@N01"}
        assert {path for path, _ in server.requests}.isdisjoint(bea_paths)  # never fetched
    assert owners_in(out) == {"ann@N00", "cid@N02"} and verify_dataset(out) == {"train": [], "val": []}
    assert holding(out, bea) == []
    assert "bea@N01" in Blocklist.from_file(out / "blocklist.txt").nsids


def test_two_builds_into_one_folder_take_turns(world, tmp_path):
    tsv, routes, photos, clean = world
    first = urlsplit(photos[0].download_url).path
    released = threading.Event()
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = ["--out", out, *BUILD]
    with LocalServer(routes, {first: [Fault("stall", release=released)]}, max_seconds=120) as server:
        one = subprocess.Popen(command("build", tsv, "--base-url", server.url, *args), env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while not server.hits(first) and time.monotonic() < deadline:
            time.sleep(0.05)
        two = subprocess.Popen(command("build", tsv, "--base-url", server.url, *args), env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        waiting = Stderr(two)
        assert waiting.wait_for("waiting"), waiting.lines
        released.set()
        assert one.wait(120) == 0 and two.wait(120) == 0, (one.stderr.read(), waiting.lines)
        assert len(server.hits(first)) == 1  # the second build resumed the first one's shard
    assert [json.loads(x) for x in (out / "stats.json", clean / "stats.json") for x in [x.read_text()]][0]["faces"] \
        == json.loads((clean / "stats.json").read_text())["faces"]
    for split in ("train",):
        assert load_metainfo(out / split) == load_metainfo(clean / split)


@pytest.fixture
def removed(tmp_path):
    """A dataset from which bob's faces were removed, its mirror packed before the removal, and bob's face bytes."""
    dataset = make_dataset(tmp_path / "dataset", ["amy@N00", "bob@N01", "cat@N02", "bob@N01"], val_fraction=0.0,
                           distinct=True)
    mirror = tmp_path / "mirror"
    pack(dataset, mirror)
    bob = face_bytes(dataset, "bob@N01")
    result = CliRunner().invoke(cli, ["remove", str(dataset), "--user-nsid", "bob@N01"])
    assert result.exit_code == 0 and holding(dataset, bob) == [], result.output
    return dataset, mirror, bob


def serve_mirror(mirror, extra=None):
    routes = {f"/m/{p.name}": p.read_bytes() for p in mirror.iterdir() if p.suffix in (".zip", ".json")}
    return LocalServer({**routes, **(extra or {})}, max_seconds=60)


def test_a_download_over_a_dataset_keeps_its_removals(removed):
    """The published copy still has bob's faces: downloading it over the dataset takes them out again."""
    dataset, mirror, bob = removed
    ledger, blocklist = (dataset / "removed.jsonl").read_bytes(), (dataset / "blocklist.txt").read_bytes()
    (dataset / ".fdf_download").mkdir(exist_ok=True)  # no marker: everything is downloaded and extracted again
    with serve_mirror(mirror) as server:
        result = CliRunner().invoke(download_command, [str(dataset), "--manifest", str(mirror / "manifest.json"),
                                                       "--base-url", server.url + "/m"])
    assert result.exit_code == 0, result.output
    assert "taken out again" in result.output
    assert holding(dataset, bob) == [] and owners_in(dataset) == {"amy@N00", "cat@N02"}
    assert verify_dataset(dataset) == {"train": [], "val": []}
    assert (dataset / "blocklist.txt").read_bytes() == blocklist  # never written by a download
    assert (dataset / "removed.jsonl").read_bytes().startswith(ledger)  # only grows


@pytest.mark.parametrize("name", ["removed.jsonl", "blocklist.txt", "removal-requests.jsonl", ".work/build.json"])
def test_an_archive_holding_the_datasets_records_is_refused_whole(removed, tmp_path, name):
    dataset, mirror, bob = removed
    before = {p: p.read_bytes() for p in every_file(dataset)}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("train/fdf_metainfo.json", "{}")
        z.writestr(name, "bob@N01\n# nothing removed\n")
    data = buf.getvalue()
    manifest = tmp_path / "evil.json"
    manifest.write_text(json.dumps({"files": [{"name": "metainfo.zip", "url": "metainfo.zip", "size": len(data),
                                               "md5": hashlib.md5(data).hexdigest()}]}))
    with LocalServer({"/m/metainfo.zip": data}, max_seconds=60) as server:
        result = CliRunner().invoke(download_command, [str(dataset), "--manifest", str(manifest),
                                                       "--base-url", server.url + "/m"])
    assert result.exit_code == 1 and "metainfo.zip" in result.output and name.split("/")[0] in result.output
    # nothing changed but the verified archive, kept for a re-run
    assert {p: p.read_bytes() for p in every_file(dataset) if p.name not in (LOCK, "metainfo.zip")} == {
        p: b for p, b in before.items() if p.name != LOCK}


@pytest.mark.parametrize("name", ["removed.jsonl", "blocklist.txt"])
def test_a_manifest_naming_a_record_is_refused_before_anything_is_fetched(removed, tmp_path, name):
    dataset, _, _ = removed
    before = (dataset / name).read_bytes()
    manifest = tmp_path / "evil.json"
    manifest.write_text(json.dumps({"files": [{"name": name, "url": name, "md5": "0" * 32, "size": 3}]}))
    with LocalServer({f"/m/{name}": b"bad"}, max_seconds=60) as server:
        result = CliRunner().invoke(download_command, [str(dataset), "--manifest", str(manifest),
                                                       "--base-url", server.url + "/m"])
        assert server.requests == []
    assert result.exit_code == 2 and "must be a plain file name ending in .zip" in result.output
    assert (dataset / name).read_bytes() == before


def test_pack_refuses_links_and_verify_reports_them(tmp_path):
    dataset = make_dataset(tmp_path / "dataset", ["amy@N00", "bob@N01"], val_fraction=0.0)
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"not for a mirror")
    image = dataset / "train" / "images" / "0.png"
    image.unlink()
    image.symlink_to(secret)
    verify = CliRunner().invoke(cli, ["verify", str(dataset)])
    assert verify.exit_code == 1 and "links or not plain files" in verify.output
    result = CliRunner().invoke(cli, ["pack", str(dataset), "--out", str(tmp_path / "mirror")])
    assert result.exit_code == 2 and "links or not plain files" in result.output
    assert not (tmp_path / "mirror").exists()
    image.unlink()
    image.write_bytes(b"")
    (dataset / "train" / "landmarks.npy").rename(tmp_path / "landmarks.npy")
    (dataset / "train" / "landmarks.npy").symlink_to(tmp_path / "landmarks.npy")
    result = CliRunner().invoke(cli, ["pack", str(dataset), "--out", str(tmp_path / "mirror")])
    assert result.exit_code == 2 and "symbolic link" in result.output
    assert not any(secret.read_bytes() in p.read_bytes() for p in every_file(tmp_path / "mirror"))


def test_a_photo_in_flight_when_its_owner_is_removed_is_not_staged(world, tmp_path):
    """The build asks again after the fetch: a removal that came while the photo was on the wire keeps its faces
    out of the shard (the photo is recorded as blocklisted, its metadata not kept for a retry)."""
    from fdf_build.config import BuildConfig
    from fdf_build.pipeline import run_build

    tsv, routes, photos, _ = world
    bea = urlsplit(photos[1].download_url).path
    released, out = threading.Event(), tmp_path / "out"
    with LocalServer(routes, {bea: [Fault("stall", release=released)]}, max_seconds=120) as server:
        config = BuildConfig(metadata=str(tsv), out=out, base_url=server.url, crawl_date="2026-01-01",
                             val_fraction=0.0, shard_size=4, keypoints="none", workers=1)
        build = threading.Thread(target=run_build, args=(config,))
        build.start()
        deadline = time.monotonic() + 60
        while not server.hits(bea) and time.monotonic() < deadline:
            time.sleep(0.05)
        with open(out / "blocklist.txt", "a") as f:  # what `remove` writes first, before it waits for the lock
            f.write("# removal (test)\nbea@N01\n")
        released.set()
        build.join(120)
    rows = {r["photo_id"]: r for r in map(json.loads, (out / ".work" / "shard_00000" / "photos.jsonl").open())}
    assert rows[photos[1].photo_id]["status"] == "blocklisted" and "yfcc" not in rows[photos[1].photo_id]
    assert rows[photos[1].photo_id]["detail"] == "removed while the build ran"
    assert not list((out / ".work").rglob("1_*.png")) and owners_in(out) == {"ann@N00", "cid@N02"}


def test_what_killed_commands_left_is_cleared_by_the_next_command(tmp_path):
    import os as _os

    dataset = make_dataset(tmp_path / "dataset", ["amy@N00", "bob@N01"], val_fraction=0.0, distinct=True)
    leftovers = [dataset / ".staging-train-abc123" / "split" / "images", dataset / ".remove-staging-x1" / "train",
                 dataset / ".val.k2j3h4g5"]
    for folder in leftovers:
        folder.mkdir(parents=True)
        (folder / "0.png").write_bytes((dataset / "train" / "images" / "0.png").read_bytes())
    shutil.copytree(dataset / "train", dataset / ".train.old")  # a swap done, its old split not yet deleted
    temps = [dataset / "train" / "images" / ".5.png.x1y2z3w4.tmp", dataset / ".work" / "shard_00000" / "faces" /
             ".9_0.png.abcd1234.tmp", dataset / ".stats.json.zz99yy88.tmp"]
    for temp in temps:
        temp.write_bytes(b"half a file")
    stale, live = (dataset / "train" / f".fdf_metainfo.json.index.{x}.tmp" for x in ("old12345", "new12345"))
    stale.write_bytes(b"a killed search's")
    live.write_bytes(b"a search building its index now")
    _os.utime(stale, (time.time() - 3600, time.time() - 3600))
    result = CliRunner().invoke(cli, ["remove", str(dataset), "--user-nsid", "nobody@N09"])
    assert result.exit_code == 0, result.output
    assert not any(p.exists() for p in [*leftovers, *temps, stale, dataset / ".train.old"])
    assert live.exists() and verify_dataset(dataset) == {"train": [], "val": []}


def test_a_split_swapped_out_halfway_is_put_back(tmp_path):
    """Where a file system cannot exchange two folders, a swap takes two renames; killed between them, the split
    is missing only until the next command puts the old one back."""
    dataset = make_dataset(tmp_path / "dataset", ["amy@N00", "bob@N01"], val_fraction=0.0)
    before = load_metainfo(dataset / "train")
    (dataset / "train").rename(dataset / ".train.old")
    result = CliRunner().invoke(search_command, [str(dataset), "--user-nsid", "amy@N00"])
    assert result.exit_code == 0 and load_metainfo(dataset / "train") == before, result.output


def test_an_append_a_crash_cut_short_is_dropped_not_continued(tmp_path):
    """A ledger or blocklist line without its newline is an append that never finished: the next removal
    reads past it and appends on a line of its own."""
    dataset = make_dataset(tmp_path / "dataset", ["amy@N00", "bob@N01"], val_fraction=0.0)
    (dataset / "blocklist.txt").write_text("# removal\ncat@N02\ndan@N0")
    (dataset / "removed.jsonl").write_text('{"removal": "r1", "photo_id": null}\n{"removal": "r2", "pho')
    result = CliRunner().invoke(cli, ["remove", str(dataset), "--user-nsid", "bob@N01"])
    assert result.exit_code == 0, result.output
    blocked = Blocklist.from_file(dataset / "blocklist.txt")
    assert blocked.nsids == {"cat@N02", "bob@N01"}
    rows = [json.loads(line) for line in (dataset / "removed.jsonl").read_text().splitlines()]
    assert rows[0] == {"removal": "r1", "photo_id": None} and {r["user_nsid"] for r in rows[1:]} == {"bob@N01"}
