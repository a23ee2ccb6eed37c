import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner

from fdf_build import privacy
from fdf_build.cli import cli, search_command
from fdf_build.filters import Blocklist
from fdf_build.layout import load_metainfo, verify_dataset
from fdf_build.localserver import PLACEHOLDER_PATH, Fault, LocalServer, Redirect
from fdf_build.fetch import RateLimiter
from fdf_build.privacy import photo_id_from_url
from fdf_build.synthetic import synthetic_photo

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
    by_nsid = privacy.search(dataset, nsids=["alice@N00"])
    assert sorted((m.split, m.image) for m in by_nsid) == sorted(expected)
    photo = synthetic_photo(1)  # bob's first photo in the train dataset
    by_id = privacy.search(dataset / "train", photo_ids=[photo.photo_id])
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
    before = privacy.search(meta_path, nsids=["dave@N03"])
    assert before and meta_path.with_name("fdf_metainfo.json.index").is_file()
    meta = json.loads(meta_path.read_text())
    for entry in meta.values():  # dave's photos change hands; the file changes size and mtime
        if entry["user_nsid"] == "dave@N03":
            entry["user_nsid"] = "zed@N09"
    meta_path.write_text(json.dumps(meta, indent=1))
    assert privacy.search(meta_path, nsids=["dave@N03"]) == []
    assert len(privacy.search(meta_path, nsids=["zed@N09"])) == len(before)


def test_index_never_answers_wrong_even_if_size_and_mtime_are_kept(dataset):
    meta_path = dataset / "train" / "fdf_metainfo.json"
    privacy.search(meta_path, nsids=["dave@N03"])
    st = meta_path.stat()
    data = meta_path.read_bytes().replace(b'"dave@N03"', b'"davy@N03"')
    with open(meta_path, "r+b") as f:  # same inode, same size
        f.write(data)
    os.utime(meta_path, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(privacy.BadInput, match="changed"):
        privacy.search(meta_path, nsids=["dave@N03"])


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
    assert not list(dataset.glob(".remove-*"))


def test_remove_dry_run_changes_nothing(dataset):
    before = {p: p.read_bytes() for p in dataset.rglob("*") if p.is_file()}
    result = CliRunner().invoke(cli, ["remove", str(dataset), "--photo-id", str(synthetic_photo(3).photo_id),
                                      "--dry-run"])
    assert result.exit_code == 0 and "would remove train/images/" in result.output
    assert {p: p.read_bytes() for p in dataset.rglob("*") if p.is_file() and ".index" not in p.name} == {
        p: b for p, b in before.items()}


def test_crash_after_the_commit_point_rolls_forward(dataset, monkeypatch):
    real = privacy._swap_split

    def crash_on_val(root, staging, split):
        if split == "val":
            raise KeyboardInterrupt("killed between splits")
        real(root, staging, split)

    monkeypatch.setattr(privacy, "_swap_split", crash_on_val)
    plan = privacy.plan_removal(dataset, nsids=["bob@N01"])
    with pytest.raises(KeyboardInterrupt):
        privacy.remove_faces(plan)
    monkeypatch.setattr(privacy, "_swap_split", real)
    assert (dataset / privacy.JOURNAL).exists()
    # any later command first finishes the removal
    result = CliRunner().invoke(cli, ["remove", str(dataset), "--user-nsid", "nobody@N00", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert faces_of(dataset, "bob@N01") == [] and verify_dataset(dataset) == {"train": [], "val": []}
    assert len((dataset / "removed.jsonl").read_text().splitlines()) == plan.count


def test_crash_before_the_commit_point_leaves_the_old_dataset(dataset, monkeypatch):
    before = {str(p.relative_to(dataset)): p.read_bytes() for p in dataset.rglob("*") if p.is_file()}

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(privacy, "write_split", boom)
    with pytest.raises(OSError):
        privacy.remove_faces(privacy.plan_removal(dataset, nsids=["bob@N01"]))
    privacy.recover(dataset)
    after = {str(p.relative_to(dataset)): p.read_bytes() for p in dataset.rglob("*") if p.is_file()}
    assert {k: v for k, v in after.items() if ".index" not in k} == {k: v for k, v in before.items()}


def test_request_for_absent_user_still_blocklists(dataset):
    result = CliRunner().invoke(cli, ["remove", str(dataset), "--user-nsid", "ghost@N07"])
    assert result.exit_code == 0 and "0 face(s) removed" in result.output
    assert "ghost@N07" in Blocklist.from_file(dataset / "blocklist.txt").nsids


def photo_urls(dataset):
    return {m["photo_id"]: m["photo_url"] for s in ("train", "val") for m in load_metainfo(dataset / s).values()}


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
    before = {str(p.relative_to(dataset)): p.read_bytes() for p in dataset.rglob("*") if p.is_file()}
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
    after = {str(p.relative_to(dataset)): p.read_bytes() for p in dataset.rglob("*") if p.is_file()}
    assert {k: v for k, v in after.items() if ".index" not in k} == {k: v for k, v in before.items()
                                                                    if ".index" not in k}
    assert not (dataset / "blocklist.txt").exists()


def test_audit_timeouts_are_unknown(dataset):
    from fdf_build.fetch import Fetcher, make_session

    urls = photo_urls(dataset)
    slow, *served = sorted(urls)
    routes = {urlsplit(u).path: b"jpeg" for u in urls.values()}
    faults = {urlsplit(urls[slow]).path: [Fault("stall", seconds=1.0)] * 3}
    with LocalServer(routes, faults, max_seconds=60) as server:
        fetcher = Fetcher(make_session(2), timeout=0.2, retries=1, backoff=0.01)
        report = privacy.audit(dataset, fetcher, base_url=server.url, rate=200)
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


def test_build_honours_the_removal_blocklist(dataset):
    from fdf_build.filters import Eligibility

    CliRunner().invoke(cli, ["remove", str(dataset), "--user-nsid", "carol@N02"])
    elig = Eligibility.from_options(("by",), dataset / "blocklist.txt")
    assert elig(synthetic_photo(9, nsid="carol@N02")).value == "blocklisted"
    assert elig(synthetic_photo(9, nsid="dave@N03")) is None
    assert Path(dataset / "removed.jsonl").is_file()
