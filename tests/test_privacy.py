import dataclasses
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner

from fdf_build.cli.main import cli
from fdf_build.cli.search import search_command
from fdf_build.config import BuildConfig
from fdf_build.dataset.layout import load_metainfo, verify_dataset
from fdf_build.dataset.metainfo import read_metainfo
from fdf_build.demo import demo_photos
from fdf_build.fetch import RateLimiter
from fdf_build.flickr import photo_id_from_url
from fdf_build.localserver import PLACEHOLDER_PATH, Fault, LocalServer, Redirect
from fdf_build.pipeline import run_build
from fdf_build.privacy import audit as privacy_audit, index as privacy_index, removal
from fdf_build.sources.filters import Blocklist
from fdf_build.sources.metadata import format_line
from fdf_build.sources.synthetic import synthetic_photo

from .conftest import REPO
from .datasets import make_dataset

OWNERS = ["alice@N00", "bob@N01", "alice@N00", "carol@N02", "dave@N03", "bob@N01"]


@pytest.fixture
def dataset(tmp_path):
    """alice's and bob's faces in both splits: two datasets written by the writer, one all-train, one all-val."""
    root = make_dataset(tmp_path / "ds", OWNERS, val_fraction=0.0)
    other = make_dataset(tmp_path / "other", ["alice@N00", "erin@N04", "bob@N01"], val_fraction=1.0,
                         first_photo=100)
    shutil.rmtree(root / "val")
    shutil.move(str(other / "val"), str(root / "val"))
    assert verify_dataset(root) == {"train": [], "val": []}
    return root


def dataset_bytes(root):
    """Every file's bytes, but the search index and the lock (caches a read leaves)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and ".index" not in p.name and p.name != removal.LOCK}


def faces_of(root, nsid):
    return [(split, k) for split in ("train", "val") for k, m in load_metainfo(root / split).items()
            if m["user_nsid"] == nsid]


@pytest.mark.parametrize(
    "url, photo_id",
    [
        ("https://www.flickr.com/photos/alice/2000000001/", 2000000001),
        ("http://www.flickr.com/photos/12345@N00/2000000001/in/photostream", 2000000001),
        ("flickr.com/photos/alice/2000000001", 2000000001),
        ("https://farm8.staticflickr.com/7038/2000000001_5d7c2f6b9c_b.jpg", 2000000001),
        ("https://live.staticflickr.com/65535/2000000001_5d7c2f6b9c.jpg", 2000000001),
        ("https://farm1.staticflickr.com/1/2000000001_abcdef0123_o.png", 2000000001),
        ("https://flic.kr/p/2", 1),
        ("https://flic.kr/p/21", 58),
        ("https://www.flickr.com/photos/alice/", None),
        ("https://example.com/x.jpg", None),
    ],
)
def test_photo_id_from_any_flickr_url(url, photo_id):
    assert photo_id_from_url(url) == photo_id


def test_search_by_every_key(dataset, tmp_path):
    expected = faces_of(dataset, "alice@N00")
    assert len({s for s, _ in expected}) == 2
    by_nsid = privacy_index.search(dataset, nsids=["alice@N00"])
    assert sorted((m.split, m.image) for m in by_nsid) == sorted(expected)
    photo = synthetic_photo(1)  # bob's first photo in the train dataset
    by_id = privacy_index.search(dataset / "train", photo_ids=[photo.photo_id])
    assert {m.entry["photo_id"] for m in by_id} == {photo.photo_id} and len(by_id) == 2
    (tmp_path / "nsids.txt").write_text("# two users\ncarol@N02\ndave@N03\n")
    result = CliRunner().invoke(search_command, [str(dataset), "--nsid-file", str(tmp_path / "nsids.txt"), "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert {m["user_nsid"] for m in found} == {"carol@N02", "dave@N03"}
    assert len(found) == len(faces_of(dataset, "carol@N02")) + len(faces_of(dataset, "dave@N03"))
    assert set(found[0]) >= {"split", "image", "photo_url", "photo_title", "license"}
    page = f"https://www.flickr.com/photos/bob/{photo.photo_id}/"
    static = f"https://farm3.staticflickr.com/99/{photo.photo_id}_abc123_z.jpg"
    for url in (page, static):
        result = CliRunner().invoke(search_command, [str(dataset), "--photo-url", url])
        assert result.exit_code == 0 and result.stdout.count("images/") == 2


def test_seed_command_line_exit_codes(dataset, tmp_path):
    meta = dataset / "train" / "fdf_metainfo.json"

    def run(*args):
        return subprocess.run([sys.executable, str(REPO / "search_username.py"), *args],
                              capture_output=True, text=True, timeout=60)

    found = run(str(meta), "--user_nsid=dave@N03")
    assert found.returncode == 0 and found.stdout.count("train/images/") == len(faces_of(dataset, "dave@N03"))
    assert "dave" not in found.stderr and "face(s) found" in found.stderr
    assert run(str(meta), "--user_nsid=nobody@N00").returncode == 1
    missing = run(str(tmp_path / "nope.json"), "--user_nsid=x")
    assert missing.returncode == 2 and "no such file" in missing.stderr and "Traceback" not in missing.stderr
    (tmp_path / "bad.json").write_text('{"0": {"user_nsid": "x"')
    bad = run(str(tmp_path / "bad.json"), "--user_nsid=x")
    assert bad.returncode == 2 and "not a valid fdf_metainfo.json" in bad.stderr and "Traceback" not in bad.stderr
    assert run(str(meta)).returncode == 2


def test_index_is_rebuilt_when_the_metainfo_changes(dataset):
    meta_path = dataset / "train" / "fdf_metainfo.json"
    before = privacy_index.search(meta_path, nsids=["dave@N03"])
    assert before and meta_path.with_name("fdf_metainfo.json.index").is_file()
    meta = json.loads(meta_path.read_text())
    for entry in meta.values():  # dave's photos change hands; the file changes size and mtime
        if entry["user_nsid"] == "dave@N03":
            entry["user_nsid"] = "zed@N09"
    meta_path.write_text(json.dumps(meta, indent=1))
    assert privacy_index.search(meta_path, nsids=["dave@N03"]) == []
    assert len(privacy_index.search(meta_path, nsids=["zed@N09"])) == len(before)


def edit_in_place(path, old: bytes, new: bytes):
    """Rewrite ``path`` keeping its inode, size and mtime: only its ctime tells."""
    assert len(old) == len(new)
    st = path.stat()
    data = path.read_bytes()
    assert old in data
    with open(path, "r+b") as f:
        f.write(data.replace(old, new))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)


def test_an_in_place_edit_keeping_size_and_mtime_is_seen(dataset):
    meta_path = dataset / "train" / "fdf_metainfo.json"
    daves = privacy_index.search(meta_path, nsids=["dave@N03"])
    assert daves and privacy_index.search(meta_path, nsids=["davy@N03"]) == []  # the index knows no davy
    edit_in_place(meta_path, b'"dave@N03"', b'"davy@N03"')
    assert sorted(m.image for m in privacy_index.search(meta_path, nsids=["davy@N03"])) == sorted(m.image for m in daves)
    assert privacy_index.search(meta_path, nsids=["dave@N03"]) == []


def index_db(meta_path):
    return sqlite3.connect(meta_path.with_name(meta_path.name + privacy_index.INDEX_SUFFIX))


def test_every_entry_the_index_returns_is_checked(dataset):
    """An index that lies (its stamp still matches) is caught by the re-check, rebuilt, and answers right."""
    meta_path = dataset / "train" / "fdf_metainfo.json"
    carols = sorted(m.image for m in privacy_index.search(meta_path, nsids=["carol@N02"]))
    with index_db(meta_path) as db:
        db.execute("UPDATE faces SET nsid = 'carol@N02' WHERE nsid = 'dave@N03'")
    assert sorted(m.image for m in privacy_index.search(meta_path, nsids=["carol@N02"])) == carols
    with index_db(meta_path) as db:  # and the lie is gone from the file
        assert db.execute("SELECT count(*) FROM faces WHERE nsid = 'dave@N03'").fetchone()[0] > 0


def test_one_indexed_query_per_lookup(dataset):
    from fdf_build.privacy.index import LOOKUP, MetainfoIndex

    meta_path = dataset / "train" / "fdf_metainfo.json"
    index = MetainfoIndex.open(meta_path)
    plan = " ".join(row[-1] for row in index.db.execute(
        "EXPLAIN QUERY PLAN " + LOOKUP, ('["x"]', "[1]")))
    assert "USING INDEX faces_nsid" in plan and "USING INDEX faces_photo" in plan and "SCAN faces" not in plan
    statements = []
    index.db.set_trace_callback(statements.append)
    found = index.lookup(nsids=["alice@N00", "bob@N01"], photo_ids=[synthetic_photo(3).photo_id])
    assert {r.user_nsid for _, r in found} == {"alice@N00", "bob@N01", "carol@N02"}
    assert len(statements) == 1
    index.close()


def test_an_old_json_index_is_replaced(dataset):
    meta_path = dataset / "train" / "fdf_metainfo.json"
    index_path = meta_path.with_name(meta_path.name + privacy_index.INDEX_SUFFIX)
    index_path.write_text('{"version": 1, "metainfo": {}, "keys": [], "spans": [], "nsid": {}, "photo_id": {}}')
    assert len(privacy_index.search(meta_path, nsids=["dave@N03"])) == len(faces_of(dataset, "dave@N03"))
    assert index_path.read_bytes().startswith(b"SQLite format 3")


def test_a_read_only_dataset_keeps_its_index_in_the_cache(dataset, tmp_path, monkeypatch):
    import tempfile

    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    for split in ("train", "val"):
        (dataset / split / ("fdf_metainfo.json" + privacy_index.INDEX_SUFFIX)).unlink(missing_ok=True)
    real_mkstemp = tempfile.mkstemp
    read_only = {str(dataset / "train"), str(dataset / "val")}

    def mkstemp(*args, dir=None, **kw):  # noqa: A002 - tests run as root too, where chmod does not stop writes
        if str(dir) in read_only:
            raise PermissionError(13, "Read-only file system", dir)
        return real_mkstemp(*args, dir=dir, **kw)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    expected = sorted(faces_of(dataset, "alice@N00"))
    assert sorted((m.split, m.image) for m in privacy_index.search(dataset, nsids=["alice@N00"])) == expected
    cached = sorted((cache / "fdf_build" / "search").glob("*.sqlite"))
    assert len(cached) == 2 and not list(dataset.rglob("*.index"))
    written = [p.stat().st_mtime_ns for p in cached]
    assert sorted((m.split, m.image) for m in privacy_index.search(dataset, nsids=["alice@N00"])) == expected
    assert [p.stat().st_mtime_ns for p in cached] == written  # used again, not rebuilt per run


def test_search_imports_nothing_heavy(dataset):
    meta = dataset / "train" / "fdf_metainfo.json"
    run = subprocess.run([sys.executable, "-X", "importtime", str(REPO / "search_username.py"), str(meta),
                          "--user_nsid=dave@N03"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    imported = {line.split("|")[-1].strip().split(".")[0] for line in run.stderr.splitlines()
                if line.startswith("import time:")}
    assert "fdf_build" in imported and "sqlite3" in imported
    assert not imported & {"numpy", "cv2", "requests", "urllib3", "tqdm", "PIL", "torch", "onnxruntime"}


def test_remove_user_in_both_splits(dataset):
    old = {s: load_metainfo(dataset / s) for s in ("train", "val")}
    old_png = {s: {k: (dataset / s / "images" / f"{k}.png").read_bytes() for k in old[s]} for s in old}
    alice = faces_of(dataset, "alice@N00")
    result = CliRunner().invoke(cli, ["remove", str(dataset), "--user-nsid", "alice@N00"])
    assert result.exit_code == 0, result.output
    assert f"{len(alice)} face(s) removed" in result.output
    assert verify_dataset(dataset) == {"train": [], "val": []}
    assert faces_of(dataset, "alice@N00") == []
    for split in ("train", "val"):
        mapping = json.loads((dataset / split / "renumbering.json").read_text())
        new = load_metainfo(dataset / split)
        assert len(new) == len(old[split]) - sum(s == split for s, _ in alice)
        for old_key, new_key in mapping.items():
            if new_key is None:
                assert old[split][old_key]["user_nsid"] == "alice@N00"
            else:
                assert new[str(new_key)] == old[split][old_key]
                assert (dataset / split / "images" / f"{new_key}.png").read_bytes() == old_png[split][old_key]
        attribution = (dataset / split / "attribution.csv").read_text()
        assert "alice@N00" not in attribution
    ledger = [json.loads(line) for line in (dataset / "removed.jsonl").read_text().splitlines()]
    assert sorted((r["split"], str(r["old_image"])) for r in ledger) == sorted(alice)
    assert "alice@N00" in Blocklist.from_file(dataset / "blocklist.txt").nsids
    assert not list(dataset.glob(".staging-*")) and not (dataset / removal.JOURNAL).exists()


def test_remove_dry_run_changes_nothing(dataset):
    before = dataset_bytes(dataset)
    result = CliRunner().invoke(cli, ["remove", str(dataset), "--photo-id", str(synthetic_photo(3).photo_id),
                                      "--dry-run"])
    assert result.exit_code == 0 and "would remove train/images/" in result.output
    assert dataset_bytes(dataset) == before


def test_crash_after_the_commit_point_rolls_forward(dataset, monkeypatch):
    real = removal._swap_split

    def crash_on_val(root, staging, split, new_metainfo=None):
        if split == "val":
            raise KeyboardInterrupt("killed between splits")
        real(root, staging, split, new_metainfo)

    monkeypatch.setattr(removal, "_swap_split", crash_on_val)
    plan = removal.plan_removal(dataset, nsids=["bob@N01"])
    with pytest.raises(KeyboardInterrupt):
        removal.remove_faces(plan)
    monkeypatch.setattr(removal, "_swap_split", real)
    assert (dataset / removal.JOURNAL).exists()
    # any later command first finishes the removal
    result = CliRunner().invoke(cli, ["remove", str(dataset), "--user-nsid", "nobody@N00", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert faces_of(dataset, "bob@N01") == [] and verify_dataset(dataset) == {"train": [], "val": []}
    assert len((dataset / "removed.jsonl").read_text().splitlines()) == plan.count


def test_crash_before_the_commit_point_leaves_the_old_splits_and_the_request_on_the_blocklist(dataset, monkeypatch):
    before = dataset_bytes(dataset)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(removal, "write_split", boom)
    with pytest.raises(OSError):
        removal.remove_faces(removal.plan_removal(dataset, nsids=["bob@N01"]))
    assert not list(dataset.glob(".staging-*"))  # no staging left behind, nothing for recovery to do
    after = dataset_bytes(dataset)
    # recorded before anything else, so no build or merge takes bob's faces again; the splits are the old ones
    assert "bob@N01" in Blocklist.from_file(dataset / "blocklist.txt").nsids
    assert {k: v for k, v in after.items() if k != "blocklist.txt"} == before


def test_an_owner_removed_twice_or_typed_in_lower_case_is_blocklisted_once(dataset):
    typed = "alice@n00"  # as an owner or maintainer may type it; the dataset says alice@N00
    assert faces_of(dataset, "alice@N00")
    for _ in range(2):
        result = CliRunner().invoke(cli, ["remove", str(dataset), "--user-nsid", typed])
        assert result.exit_code == 0, result.output
    assert faces_of(dataset, "alice@N00") == []
    entries = [line for line in (dataset / "blocklist.txt").read_text().splitlines() if not line.startswith("#")]
    assert entries == ["alice@N00"]
    result = CliRunner().invoke(cli, ["remove", str(dataset), "--user-nsid", "ghost@N07", "--user-nsid", typed])
    assert result.exit_code == 0
    entries = [line for line in (dataset / "blocklist.txt").read_text().splitlines() if not line.startswith("#")]
    assert entries == ["alice@N00", "ghost@N07"]


def test_request_for_absent_user_still_blocklists(dataset):
    result = CliRunner().invoke(cli, ["remove", str(dataset), "--user-nsid", "ghost@N07"])
    assert result.exit_code == 0 and "0 face(s) removed" in result.output
    assert "ghost@N07" in Blocklist.from_file(dataset / "blocklist.txt").nsids


def photo_urls(dataset):
    """The URL audit checks per photo: the image's (its placeholder redirect is evidence), else the page's."""
    return {r.photo_id: r.download_url or r.photo_url for s in ("train", "val")
            for r in read_metainfo(dataset / s).values()}


def photo_ids_in(dataset):
    return set(photo_urls(dataset))


def audit_cli(server, dataset, *extra):
    return CliRunner().invoke(cli, ["audit", str(dataset), "--base-url", server.url, "--rate", "200", *extra])


def test_audit_lists_and_removes_only_on_evidence(dataset):
    urls = photo_urls(dataset)
    path = {pid: urlsplit(u).path for pid, u in urls.items()}
    routes = {p: b"jpeg bytes " * 100 for p in path.values()}
    ids = sorted(urls)
    removed, missing, withdrawn, *others = ids
    routes[path[removed]] = Redirect(PLACEHOLDER_PATH)
    routes[PLACEHOLDER_PATH] = b"png"
    del routes[path[missing]]  # 404
    doubtful = dict(zip(others, (401, 403, 400, 405, 500, 503)))
    assert len(doubtful) == 6  # each answer once: none of them is most of the photos

    def faults():
        return {path[withdrawn]: [Fault("status", 410)] * 10,
                **{path[pid]: [Fault("status", status)] * 10 for pid, status in doubtful.items()}}

    with LocalServer(routes, faults(), max_seconds=60) as server:
        result = audit_cli(server, dataset)
        assert result.exit_code == 0, result.output
        assert f"gone: photo {removed} (photo_removed)" in result.output
        assert f"gone: photo {missing} (http_404)" in result.output
        assert f"gone: photo {withdrawn} (http_404)" in result.output
        for pid, status in doubtful.items():
            assert f"unknown: photo {pid} (HTTP {status})" in result.output
        assert f"{len(ids)} photo(s) checked, 3 gone, 6 unknown" in result.output
        # no full bodies: every request asked for one byte
        assert server.range_headers and {h for _, h in server.range_headers} == {"bytes=0-0"}
        server.faults.update(faults())
        result = audit_cli(server, dataset, "--apply")
    assert result.exit_code == 0, result.output
    assert photo_ids_in(dataset) == set(ids) - {removed, missing, withdrawn}
    assert Blocklist.from_file(dataset / "blocklist.txt").photo_ids == {removed, missing, withdrawn}
    assert verify_dataset(dataset) == {"train": [], "val": []}


@pytest.mark.parametrize("status", [401, 403, 500])
def test_audit_against_a_server_refusing_everything_removes_nothing(dataset, status):
    """A proxy or wrong mirror answering 401 (or 403, 5xx) to every photo: the server is wrong, not the photos."""
    before = dataset_bytes(dataset)
    paths = [urlsplit(u).path for u in photo_urls(dataset).values()]
    faults = {p: [Fault("status", status)] * 50 for p in paths}
    with LocalServer({p: b"jpeg" for p in paths}, faults, max_seconds=60) as server:
        listed = audit_cli(server, dataset)
        assert listed.exit_code == 0 and "0 gone" in listed.output
        assert f"answered HTTP {status}: the server is wrong" in listed.stderr
        result = audit_cli(server, dataset, "--apply")
    assert result.exit_code == 2
    last = result.stderr.strip().splitlines()[-1]
    assert f"answered HTTP {status}: the server is wrong, not the photos; nothing removed" in last
    assert "Traceback" not in result.output
    assert dataset_bytes(dataset) == before
    assert not (dataset / "blocklist.txt").exists()


def test_audit_timeouts_are_unknown(dataset):
    from fdf_build.fetch import Fetcher, make_session

    urls = photo_urls(dataset)
    slow, *served = sorted(urls)
    routes = {urlsplit(u).path: b"jpeg" for u in urls.values()}
    faults = {urlsplit(urls[slow]).path: [Fault("stall", seconds=1.0)] * 3}
    with LocalServer(routes, faults, max_seconds=60) as server:
        fetcher = Fetcher(make_session(2), timeout=0.2, retries=1, backoff=0.01)
        report = privacy_audit.audit(dataset, fetcher, base_url=server.url, rate=200)
    assert report.gone == {} and report.unknown == {slow: "http_timeout"}
    assert report.checked == len(urls) and report.dominant_failure is None


def test_rate_limiter_spaces_calls():
    now = [0.0]
    slept = []

    def sleep(s):
        slept.append(s)
        now[0] += s

    limiter = RateLimiter(4.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        limiter.wait()
    assert now[0] == pytest.approx(1.0) and slept == pytest.approx([0.25] * 4)


@pytest.fixture
def world(tmp_path):
    """Four real photos of three owners, the last one failing with 503 on its first tries."""
    data = demo_photos()["whitehouse_obama_biden.jpg"]
    photos = [synthetic_photo(i, nsid=nsid, license="by") for i, nsid in
              enumerate(["ann@N00", "bea@N01", "bea@N01", "cid@N02"])]
    routes = {urlsplit(p.download_url).path: data for p in photos}
    tsv = tmp_path / "yfcc.tsv"
    tsv.write_text("".join(format_line(p) + "\n" for p in photos))
    return tsv, routes, urlsplit(photos[3].download_url).path


def owners_in(out):
    return {m["user_nsid"] for s in ("train", "val") if (out / s).is_dir() for m in load_metainfo(out / s).values()}


def test_a_removal_is_final_through_retry_failed_and_rebuilds(world, tmp_path):
    tsv, routes, flaky = world
    out = tmp_path / "out"
    with LocalServer(routes, {flaky: [Fault("status", 503)] * 10}, max_seconds=120) as server:
        config = BuildConfig(metadata=str(tsv), out=out, base_url=server.url, crawl_date="2026-01-01",
                             val_fraction=0.0, retries=0, shard_size=2, keypoints="none", workers=2)
        assert run_build(config).skipped["http_5xx"] == 1
    assert owners_in(out) == {"ann@N00", "bea@N01"}
    bea_pngs = {p.name for s in sorted((out / ".work").glob("shard_*"))
                for p in (s / "faces").iterdir() if p.name.startswith(("1_", "2_"))}
    assert bea_pngs
    for nsid in ("bea@N01", "cid@N02"):  # cid's only photo failed: not in the dataset, blocklisted all the same
        result = CliRunner().invoke(cli, ["remove", str(out), "--user-nsid", nsid])
        assert result.exit_code == 0, result.output
    assert owners_in(out) == {"ann@N00"}
    # the removed faces are gone from the build's shards too (split images were hard links to them)
    assert not any((s / "faces" / name).exists() for s in (out / ".work").glob("shard_*") for name in bea_pngs)
    with LocalServer(routes, max_seconds=120) as server:
        result = CliRunner().invoke(cli, ["retry-failed", str(out), "--base-url", server.url])
        assert result.exit_code == 0, result.output
        assert server.hits(flaky) == []  # a removed owner's photo is not even fetched again
        assert owners_in(out) == {"ann@N00"}
        summary = run_build(dataclasses.replace(config, base_url=server.url))  # the same build again: resumes
    assert owners_in(out) == {"ann@N00"} and summary.shards["resumed"] == 2
    for nsid in ("bea@N01", "cid@N02"):
        assert privacy_index.search(out, nsids=[nsid]) == []
    assert verify_dataset(out) == {"train": [], "val": []}


def test_build_honours_the_removal_blocklist(world, tmp_path):
    """After a removal, a build from scratch (--restart) into the dataset, or into another folder given the
    dataset's blocklist.txt, neither fetches the removed owner's photos nor keeps her faces, not even in its shards."""
    tsv, routes, _ = world
    out = tmp_path / "out"
    bea = {urlsplit(synthetic_photo(i, nsid="bea@N01").download_url).path for i in (1, 2)}  # world's photos 1 and 2
    with LocalServer(routes, max_seconds=120) as server:
        def build(target, *args):
            result = CliRunner().invoke(cli, ["build", str(tsv), "--out", str(target), "--base-url", server.url,
                                              "--val-fraction", "0", "--shard-size", "2", "--keypoints", "none",
                                              "--workers", "2", *args])
            assert result.exit_code == 0, result.output
            return result.output

        build(out)
        assert owners_in(out) == {"ann@N00", "bea@N01", "cid@N02"}
        assert CliRunner().invoke(cli, ["remove", str(out), "--user-nsid", "bea@N01"]).exit_code == 0
        elsewhere = tmp_path / "elsewhere"
        for target, args in ((out, ["--restart"]), (elsewhere, ["--blocklist", str(out / "blocklist.txt")])):
            before = len(server.requests)
            build(target, *args)
            assert owners_in(target) == {"ann@N00", "cid@N02"}
            assert {path for path, _ in server.requests[before:]}.isdisjoint(bea), target
            cut = {p.name.split("_")[0] for p in (target / ".work").rglob("*.png")}
            assert cut == {"0", "3"}, target  # faces of photos 0 and 3 only: ann's and cid's


def test_merges_leave_out_what_a_grown_blocklist_names(world, tmp_path):
    """Shards built before an owner was blocklisted: the merge filters them, no --restart needed."""
    tsv, routes, _ = world
    blocklist = tmp_path / "blocklist.txt"
    blocklist.write_text("# empty for now\n")
    with LocalServer(routes, max_seconds=120) as server:
        config = BuildConfig(metadata=str(tsv), out=tmp_path / "out", base_url=server.url, crawl_date="2026-01-01",
                             val_fraction=0.0, shard_size=2, keypoints="none", workers=2, blocklist=blocklist)
        run_build(config)
        assert owners_in(tmp_path / "out") == {"ann@N00", "bea@N01", "cid@N02"}
        blocklist.write_text("bea@N01\n")
        summary = run_build(config)  # the same build, resumed with the grown blocklist
    assert summary.shards["resumed"] == 2 and summary.shards["built"] == 0
    assert owners_in(tmp_path / "out") == {"ann@N00", "cid@N02"}
    assert summary.faces["removed_or_blocklisted"] == 4


def read_attributes(split_dir):
    lines = [json.loads(line) for line in (split_dir / "attributes.jsonl").read_text().splitlines()]
    files = sorted((split_dir / "attributes").glob("*.json"), key=lambda p: int(p.stem))
    assert [int(p.stem) for p in files] == [row["image"] for row in lines] == list(range(len(lines)))
    for row, path in zip(lines, files):
        assert json.loads(path.read_text()) == {k: v for k, v in row.items() if k != "image"}
    return lines


def test_removal_renumbers_attributes_with_the_rest(dataset):
    from fdf_build.attributes import AttributeModels, annotate_split

    before, models = {}, AttributeModels()
    for split in ("train", "val"):
        annotate_split(dataset / split, models)
        before[split] = read_attributes(dataset / split)
    result = CliRunner().invoke(cli, ["remove", str(dataset), "--user-nsid", "alice@N00"])
    assert result.exit_code == 0, result.output
    for split in ("train", "val"):
        after = read_attributes(dataset / split)
        mapping = json.loads((dataset / split / "renumbering.json").read_text())
        assert len(after) == len(load_metainfo(dataset / split)) < len(before[split])
        for old, new in mapping.items():
            if new is not None:
                assert {**after[new], "image": int(old)} == before[split][int(old)]


def test_a_plan_made_before_another_removal_is_made_again(dataset):
    """Two removals planned on the same numbering: the second must not remove by stale numbers."""
    bob = removal.plan_removal(dataset, nsids=["bob@N01"])
    carol = removal.plan_removal(dataset, nsids=["carol@N02"])
    expected = {s: {k for k, m in load_metainfo(dataset / s).items() if m["user_nsid"] not in ("bob@N01", "carol@N02")}
                for s in ("train", "val")}
    kept = {s: sorted((m["photo_id"], m["face_index"]) for k, m in load_metainfo(dataset / s).items()
                      if k in expected[s]) for s in expected}
    removal.remove_faces(bob)
    removal.remove_faces(carol)
    assert owners_in(dataset) == {"alice@N00", "dave@N03", "erin@N04"}
    assert {s: sorted((m["photo_id"], m["face_index"]) for m in load_metainfo(dataset / s).values())
            for s in kept} == kept
    assert verify_dataset(dataset) == {"train": [], "val": []}


def test_removals_take_turns(dataset, tmp_path):
    """A second removal waits for the dataset's lock, says so, then runs on the dataset the first one left."""
    script = ("import sys; from fdf_build.cli.main import cli; "
              "cli(['remove', sys.argv[1], '--user-nsid', 'dave@N03'], prog_name='fdf-build')")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    errors, waiting = [], threading.Event()

    def read_errors(stream):
        for line in stream:
            errors.append(line)
            if "waiting" in line:
                waiting.set()

    with removal.dataset_lock(dataset):
        second = subprocess.Popen([sys.executable, "-c", script, str(dataset)], env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        reader = threading.Thread(target=read_errors, args=(second.stderr,), daemon=True)
        reader.start()
        # the second removal says it waits once it has met the lock: no guess at how long it takes to get there
        assert waiting.wait(60) and second.poll() is None, "".join(errors)
        assert faces_of(dataset, "dave@N03")  # nothing happened while the lock was held
        removal.remove_faces(removal.plan_removal(dataset, nsids=["bob@N01"]))  # the holder may go on
    out = second.stdout.read()  # to the end: the second removal has run and exited
    assert second.wait(60) == 0, "".join(errors)
    reader.join(60)
    assert "face(s) removed" in out
    assert owners_in(dataset) == {"alice@N00", "carol@N02", "erin@N04"}
    assert verify_dataset(dataset) == {"train": [], "val": []}


def test_blocklist_is_on_disk_before_the_ledger(dataset, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(Path(os.readlink(f"/proc/self/fd/{fd}")).name)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    removal.remove_faces(removal.plan_removal(dataset, nsids=["dave@N03"]))
    names = [n for n in synced if n in (removal.BLOCKLIST, removal.LEDGER)]
    assert names == [removal.BLOCKLIST, removal.LEDGER]


def test_audit_against_a_wrong_mirror_answering_404_to_everything_removes_nothing(dataset):
    """404 is evidence for one photo; for most of them it says the mirror or its paths are wrong."""
    before = dataset_bytes(dataset)
    with LocalServer({}, max_seconds=60) as server:  # knows no photo at all
        listed = audit_cli(server, dataset)
        assert listed.exit_code == 0 and f"{len(photo_urls(dataset))} gone" in listed.output
        result = audit_cli(server, dataset, "--apply")
    assert result.exit_code == 2 and "answered HTTP 404/410: the server is wrong" in result.stderr
    assert dataset_bytes(dataset) == before


def test_audit_believes_placeholder_redirects_however_many(dataset):
    paths = [urlsplit(u).path for u in photo_urls(dataset).values()]
    routes = {p: Redirect(PLACEHOLDER_PATH) for p in paths}
    routes[PLACEHOLDER_PATH] = b"png"
    with LocalServer(routes, max_seconds=60) as server:
        result = audit_cli(server, dataset, "--apply")
    assert result.exit_code == 0, result.output
    assert photo_ids_in(dataset) == set() and verify_dataset(dataset) == {"train": [], "val": []}


FDF_KEYS = ("author", "bounding_box", "category", "date_crawled", "date_taken", "date_uploaded", "landmark",
            "license", "license_url", "original_bounding_box", "original_landmark", "photo_title", "photo_url",
            "yfcc100m_line_idx", "user_nsid")


@pytest.fixture
def published(dataset):
    """The dataset with its metainfo in FDF's published schema: FDF's keys + user_nsid, some of them missing."""
    for split in ("train", "val"):
        meta = load_metainfo(dataset / split)
        for n, entry in meta.items():
            meta[n] = {k: v for k, v in entry.items() if k in FDF_KEYS}
            if int(n) % 3 == 0:
                del meta[n]["author"], meta[n]["date_taken"]
            assert "/photos/" in meta[n]["photo_url"]  # FDF's photo_url is the photo's page
        (dataset / split / "fdf_metainfo.json").write_text(json.dumps(meta))
    return dataset


def test_published_schema_in_search_remove_and_audit(published):
    dataset = published
    photo = synthetic_photo(3)  # carol's
    static = f"https://live.staticflickr.com/65535/{photo.photo_id}_abcdef1234_b.jpg"
    found = CliRunner().invoke(search_command, [str(dataset), "--photo-url", static, "--json"])
    assert found.exit_code == 0, found.output
    assert {m["photo_id"] for m in json.loads(found.stdout)} == {photo.photo_id}
    old = {s: load_metainfo(dataset / s) for s in ("train", "val")}
    result = CliRunner().invoke(cli, ["remove", str(dataset), "--photo-url", static, "--user-nsid", "dave@N03"])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and not list(dataset.glob(".staging-*"))
    assert owners_in(dataset) == {"alice@N00", "bob@N01", "erin@N04"}
    assert verify_dataset(dataset) == {"train": [], "val": []}
    renumbered = [s for s in ("train", "val") if (dataset / s / "renumbering.json").is_file()]
    assert renumbered
    for split in renumbered:
        mapping = json.loads((dataset / split / "renumbering.json").read_text())
        new = load_metainfo(dataset / split)
        for old_key, new_key in mapping.items():
            if new_key is not None:  # what a kept face had is kept
                assert new[str(new_key)].items() >= old[split][old_key].items()
    ledger = [json.loads(line) for line in (dataset / "removed.jsonl").read_text().splitlines()]
    assert {r["photo_id"] for r in ledger if r["user_nsid"] == "carol@N02"} == {photo.photo_id}
    pages = {r.photo_id: r.photo_url for s in ("train", "val") for r in read_metainfo(dataset / s).values()}
    gone = min(pages)
    routes = {urlsplit(u).path: b"<html>" for pid, u in pages.items() if pid != gone}
    with LocalServer(routes, max_seconds=60) as server:
        result = audit_cli(server, dataset, "--apply")
    assert result.exit_code == 0, result.output
    assert f"gone: photo {gone} (http_404)" in result.output
    assert photo_ids_in(dataset) == set(pages) - {gone}


def test_no_staging_left_by_a_failure_while_writing(dataset, monkeypatch):
    def boom(*a, **k):
        raise KeyError("photo_id")  # what the published schema once raised mid-removal

    monkeypatch.setattr(removal, "write_attributes", boom)
    from fdf_build.attributes import AttributeModels, annotate_split

    annotate_split(dataset / "train", AttributeModels())
    before = dataset_bytes(dataset)
    with pytest.raises(KeyError):
        removal.remove_faces(removal.plan_removal(dataset, nsids=["alice@N00"]))
    after = dataset_bytes(dataset)
    assert not list(dataset.glob(".staging-*")) and {k: v for k, v in after.items() if k != "blocklist.txt"} == before


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
def test_index_scan_finds_every_entry_whatever_the_window(tmp_path, chunk):
    """The bounded-memory scan gives each entry's exact byte range, across windows, in UTF-8 and any spacing."""
    import io

    from fdf_build.privacy.index import _top_level_entries

    entries = {str(i): {"user_nsid": f"{i}@N0{i % 3}", "photo_title": "Ærø – 東京 " * (i % 4), "n": [i, {"x": None}]}
               for i in range(40)}
    for indent in (None, 1, "\t"):
        raw = json.dumps(entries, ensure_ascii=False, indent=indent).encode("utf-8")
        seen = [(k, json.loads(raw[start:end]), v)
                for k, start, end, v in _top_level_entries(io.BytesIO(raw), chunk=chunk)]
        assert [k for k, _, _ in seen] == list(entries)
        assert all(entry == entries[k] for k, entry, _ in seen)
        assert all(v["user_nsid"] == entries[k]["user_nsid"] for k, _, v in seen)
    for bad in (b'{"0": {"a": 1}', b'{"0": {"a": 1},}', b'[1, 2]', b'{"0" {"a": 1}}'):
        with pytest.raises(ValueError):
            list(_top_level_entries(io.BytesIO(bad), chunk=chunk))
    assert list(_top_level_entries(io.BytesIO(b' { } '), chunk=chunk)) == []
