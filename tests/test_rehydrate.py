"""Publish a real build as metadata only and recreate it from the same (fault-injecting) local server."""

import bz2
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from fdf_build import rehydrate as rehydrate_module
from fdf_build.cli.download import download_command
from fdf_build.cli.main import cli
from fdf_build.config import BuildConfig
from fdf_build.dataset.archive import pack
from fdf_build.dataset.layout import load_metainfo
from fdf_build.dataset.published import RehydrateError
from fdf_build.demo import demo_metadata, demo_photos
from fdf_build.flickr import is_page_url
from fdf_build.localserver import PLACEHOLDER_PATH, Fault, LocalServer, Redirect
from fdf_build.pipeline import run_build
from fdf_build.rehydrate import FACES_REPORT, SUMMARY, RehydrateConfig, rehydrate
from fdf_build.sources.metadata import format_line

from .conftest import REPO
from .datasets import card_faces

SPLITS = ("train", "val")
#: what FDF's README lists for an entry, plus user_nsid: the published form, without our static URL
FDF_KEYS = ("author", "bounding_box", "category", "date_crawled", "date_taken", "date_uploaded", "landmark", "license",
            "license_url", "original_bounding_box", "original_landmark", "photo_title", "photo_url",
            "yfcc100m_line_idx", "user_nsid")


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A default build of the bundled real photos, packed with --metadata-only: (build, mirror, routes, records)."""
    base = tmp_path_factory.mktemp("rehydrate")
    records, routes = demo_metadata(demo_photos())
    tsv = base / "yfcc.tsv"
    tsv.write_text("".join(format_line(p) + "\n" for p in records))
    with LocalServer(routes, max_seconds=120) as server:
        run_build(BuildConfig(metadata=str(tsv), out=base / "build", base_url=server.url, crawl_date="2026-01-01",
                              val_fraction=0.5, workers=4))
    result = CliRunner().invoke(cli, ["pack", str(base / "build"), "--out", str(base / "mirror"), "--metadata-only"])
    assert result.exit_code == 0, result.output
    return base / "build", base / "mirror", routes, records, tsv


def faces_of(root: Path) -> dict:
    """Per split, each face in order: (metainfo entry, PNG bytes, landmarks row, box row)."""
    out = {}
    for split in SPLITS:
        d = Path(root) / split
        meta = load_metainfo(d)
        landmarks, boxes = np.load(d / "landmarks.npy"), np.load(d / "bounding_box.npy")
        out[split] = [(meta[str(n)], (d / "images" / f"{n}.png").read_bytes(), landmarks[n].tobytes(),
                       boxes[n].tobytes()) for n in range(len(meta))]
    return out


def download_metadata(published, target: Path) -> None:
    _, mirror, _, _, _ = published
    routes = {f"/m/{p.name}": p.read_bytes() for p in mirror.iterdir()}
    with LocalServer(routes, max_seconds=60) as server:
        result = CliRunner().invoke(download_command, [str(target), "--manifest", str(mirror / "manifest.json"),
                                                       "--base-url", server.url + "/m"])
    assert result.exit_code == 0, result.output
    assert "metadata only" in result.output


def metadata_copy(published, tmp_path: Path) -> Path:
    """``tmp_path/copy``: the published metadata, downloaded as a user would, without any image."""
    target = tmp_path / "copy"
    download_metadata(published, target)
    return target


def fresh_copy(published, tmp_path: Path) -> tuple[Path, dict, dict[int, str], Path]:
    """(the build, its photos' routes, photo id -> path, a fresh metadata-only copy of it)."""
    build, _, routes, _, _ = published
    return build, routes, photo_paths(build), metadata_copy(published, tmp_path)


def blocklisted(dataset: Path) -> list[str]:
    path = dataset / "blocklist.txt"
    return [line for line in path.read_text().splitlines() if not line.startswith("#")] if path.exists() else []


def run_rehydrate(target: Path, routes: dict, *args, faults=None):
    with LocalServer(routes, faults or {}, max_seconds=120) as server:
        result = CliRunner().invoke(cli, ["rehydrate", str(target), "--base-url", server.url, "--retries", "1",
                                          "--workers", "4", *args])
    return result, server


def photo_paths(build: Path) -> dict[int, str]:
    """Server path of each photo that has faces in the build, by photo id."""
    return {entry["photo_id"]: urlsplit(entry["download_url"]).path
            for split in SPLITS for entry in load_metainfo(build / split).values()}


def faces_per_photo(build: Path) -> dict[int, int]:
    counts = {}
    for split in SPLITS:
        for entry in load_metainfo(build / split).values():
            counts[entry["photo_id"]] = counts.get(entry["photo_id"], 0) + 1
    return counts


def test_metadata_only_pack_has_no_pixels(published):
    build, mirror, _, _, _ = published
    manifest = json.loads((mirror / "manifest.json").read_text())
    assert manifest["metadata_only"] is True
    assert [f["name"] for f in manifest["files"]] == ["metainfo.zip"]
    names = zipfile.ZipFile(mirror / "metainfo.zip").namelist()
    assert not [n for n in names if n.endswith(".png")]
    assert "crop_geometry.json" in names
    for split in SPLITS:
        md5s = zipfile.ZipFile(mirror / "metainfo.zip").read(f"{split}/images.md5").decode().splitlines()
        assert len(md5s) == len(load_metainfo(build / split)) > 0  # both splits have faces


def test_round_trip_is_byte_identical_with_one_fetch_per_photo(published, tmp_path):
    build, _, routes, _, _ = published
    target = metadata_copy(published, tmp_path)
    result, server = run_rehydrate(target, routes)
    assert result.exit_code == 0, result.output
    assert faces_of(target) == faces_of(build)
    for split in SPLITS:
        assert (target / split / "attribution.csv").read_bytes() == (build / split / "attribution.csv").read_bytes()
    counts = faces_per_photo(build)
    assert max(counts.values()) > 1  # a photo with several faces: still one request
    for photo_id, path in photo_paths(build).items():
        assert len(server.hits(path)) == 1
    summary = json.loads((target / SUMMARY).read_text())
    assert summary["faces"] == {"published": sum(counts.values()), "identical": sum(counts.values())}
    assert (target / FACES_REPORT).read_text() == ""
    assert f"{sum(counts.values())} byte-identical" in result.output
    assert f"{len(counts)} fetched now, 0 done before" in result.output
    # a finished rehydration is not redone, and says so
    again, server = run_rehydrate(target, routes)
    assert again.exit_code == 0 and not server.requests
    assert f"0 fetched now, {len(counts)} done before" in again.output


def test_gone_and_blocklisted_photos_are_taken_out_as_remove_does(published, tmp_path):
    build, _, routes, _, _ = published
    paths = photo_paths(build)
    counts = faces_per_photo(build)
    multi = max(counts, key=counts.get)
    placeholder, missing, gone410, blocked = [multi] + [p for p in sorted(paths) if p != multi][:3]
    served = dict(routes)
    served[paths[placeholder]] = Redirect(PLACEHOLDER_PATH)
    del served[paths[missing]]
    entries = {e["photo_id"]: e for s in SPLITS for e in load_metainfo(build / s).values()}
    blocklist = tmp_path / "blocklist.txt"
    blocklist.write_text(f"# an owner who opted out\n{entries[blocked]['user_nsid']}\n")
    target = metadata_copy(published, tmp_path)
    result, server = run_rehydrate(target, served, "--blocklist", str(blocklist),
                                   faults={paths[gone410]: [Fault("status", 410)]})
    assert result.exit_code == 0, result.output
    assert not server.hits(paths[blocked])  # a blocklisted photo is not even fetched
    gone = {placeholder: "photo_removed", missing: "http_404", gone410: "http_404", blocked: "blocklisted"}
    expected = {s: [f for f in faces if f[0]["photo_id"] not in gone] for s, faces in faces_of(build).items()}
    assert faces_of(target) == expected
    report = [json.loads(line) for line in (target / FACES_REPORT).read_text().splitlines()]
    assert {(r["photo_id"], r["outcome"]) for r in report} == set(gone.items())
    assert len(report) == sum(counts[p] for p in gone) and not any(r["kept"] for r in report)
    ledger = [json.loads(line) for line in (target / "removed.jsonl").read_text().splitlines()]
    assert {r["photo_id"] for r in ledger} == set(gone)
    for split in SPLITS:  # renumbered as remove renumbers, with the md5 list following
        renumbering = json.loads((target / split / "renumbering.json").read_text())
        assert sorted(v for v in renumbering.values() if v is not None) == list(range(len(expected[split])))
        assert len((target / split / "images.md5").read_text().splitlines()) == len(expected[split])
    summary = json.loads((target / SUMMARY).read_text())["faces"]
    assert summary["gone"] == sum(counts[p] for p in (placeholder, missing, gone410))
    assert summary["blocklisted"] == counts[blocked]
    assert "gone from Flickr" in result.output and "taken out" in result.output
    assert card_faces(target) == {split: len(faces) for split, faces in expected.items()}


def reencoded(data: bytes) -> bytes:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 70])[1].tobytes()


@pytest.mark.parametrize("policy", ["keep", "drop"])
def test_changed_photo_is_reported_and_kept_or_dropped(published, tmp_path, policy):
    build, _, routes, _, _ = published
    paths = photo_paths(build)
    changed = sorted(paths)[0]
    served = dict(routes)
    served[paths[changed]] = reencoded(routes[paths[changed]])
    target = metadata_copy(published, tmp_path)
    result, _ = run_rehydrate(target, served, "--changed", policy)
    assert result.exit_code == 0, result.output
    report = [json.loads(line) for line in (target / FACES_REPORT).read_text().splitlines()]
    assert {r["photo_id"] for r in report} == {changed}
    assert all(r["outcome"] == "changed" and r["kept"] == (policy == "keep") for r in report)
    source, copy = faces_of(build), faces_of(target)
    if policy == "drop":
        assert copy == {s: [f for f in faces if f[0]["photo_id"] != changed] for s, faces in source.items()}
    else:
        for split in SPLITS:
            assert len(copy[split]) == len(source[split])
            for (entry, png, lm, box), (entry2, png2, lm2, box2) in zip(source[split], copy[split]):
                assert (entry, lm, box) == (entry2, lm2, box2)
                assert (png == png2) == (entry["photo_id"] != changed)


def test_failed_photos_leave_it_unfinished_and_a_rerun_completes(published, tmp_path):
    build, routes, paths, target = fresh_copy(published, tmp_path)
    flaky = sorted(paths)[1]
    result, _ = run_rehydrate(target, routes, faults={paths[flaky]: [Fault("status", 503)] * 2})
    assert result.exit_code == 1
    assert "re-run" in result.output and "http_5xx" in result.output
    assert not (target / SUMMARY).exists()
    result, server = run_rehydrate(target, routes)
    assert result.exit_code == 0, result.output
    assert [path for path, _ in server.requests] == [paths[flaky]]  # only the failed photo is fetched again
    assert faces_of(target) == faces_of(build)


def test_drop_failed_finishes_without_them(published, tmp_path):
    build, routes, paths, target = fresh_copy(published, tmp_path)
    flaky = sorted(paths)[1]
    result, _ = run_rehydrate(target, routes, "--drop-failed", faults={paths[flaky]: [Fault("status", 500)] * 2})
    assert result.exit_code == 0, result.output
    assert faces_of(target) == {s: [f for f in faces if f[0]["photo_id"] != flaky]
                                for s, faces in faces_of(build).items()}
    blocked = blocklisted(target)
    assert str(flaky) not in blocked  # unreachable is not deleted: a later build may have it


def test_killed_rehydration_resumes_to_the_same_bytes(published, tmp_path):
    build, routes, paths, target = fresh_copy(published, tmp_path)
    order = sorted(paths)
    stall = {paths[order[-1]]: [Fault("stall", seconds=30)]}
    with LocalServer(routes, stall, max_seconds=60) as server:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        proc = subprocess.Popen([sys.executable, "-m", "fdf_build", "rehydrate", str(target), "--base-url",
                                 server.url, "--workers", "1"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            deadline = time.monotonic() + 30
            while not server.hits(paths[order[-1]]) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert server.hits(paths[order[-1]]), "the run never reached the stalled photo"
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    written = sum(len(list((target / s / "images").glob("*.png"))) for s in SPLITS)
    assert 0 < written < sum(faces_per_photo(build).values())
    result, server = run_rehydrate(target, routes)
    assert result.exit_code == 0, result.output
    assert faces_of(target) == faces_of(build)
    assert len(server.requests) < len(paths)  # what the killed run finished was not fetched again


@pytest.mark.parametrize("compress", [bz2.compress, gzip.compress])
def test_fdf_published_keys_and_yfcc(published, tmp_path, compress):
    """FDF's own metainfo has no image URL (its photo_url is the page) nor photo_id: the YFCC file gives the URL."""
    build, _, routes, _, tsv = published
    target = metadata_copy(published, tmp_path)
    for split in SPLITS:
        meta = load_metainfo(target / split)
        reduced = {key: {k: e[k] for k in FDF_KEYS} for key, e in meta.items()}
        assert all(is_page_url(e["photo_url"]) for e in reduced.values())
        (target / split / "fdf_metainfo.json").write_text(json.dumps(reduced))
    yfcc = tmp_path / "yfcc100m_dataset.compressed"
    yfcc.write_bytes(compress(tsv.read_bytes()))
    before = {split: load_metainfo(target / split) for split in SPLITS}
    for args in ((), ("--drop-failed",)):  # without --yfcc there is no URL to fetch: the advice names --yfcc
        result, _ = run_rehydrate(target, routes, *args)
        assert result.exit_code == 1
        error = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
        assert len(error) == 1 and "pass --yfcc with the YFCC100M metadata file" in error[0], result.stderr
        assert "--drop-failed" not in error[0]
        assert {split: load_metainfo(target / split) for split in SPLITS} == before  # --drop-failed takes out no face whose photo was never looked for
    result, server = run_rehydrate(target, routes, "--yfcc", str(yfcc))
    assert result.exit_code == 0, result.output
    strip = lambda faces: {s: [f[1:] for f in v] for s, v in faces.items()}  # noqa: E731
    assert strip(faces_of(target)) == strip(faces_of(build))
    assert len(server.requests) == len(photo_paths(build))


def test_download_fdf256_rehydrate(published, tmp_path):
    build, mirror, routes, _, _ = published
    mirror_routes = {f"/m/{p.name}": p.read_bytes() for p in mirror.iterdir()}
    target = tmp_path / "copy"
    with LocalServer({**routes, **mirror_routes}, max_seconds=60) as server:
        result = subprocess.run(
            [sys.executable, str(REPO / "download_fdf256.py"), str(target), "--manifest", str(mirror / "manifest.json"),
             "--base-url", server.url + "/m", "--rehydrate", "--photos-from", server.url],
            env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "byte-identical" in result.stdout
    assert faces_of(target) == faces_of(build)


def test_failed_image_archives_point_to_rehydrate(published, tmp_path):
    build, _, _, _, _ = published
    full = tmp_path / "full"
    pack(build, full)
    routes = {f"/m/{p.name}": p.read_bytes() for p in full.iterdir() if p.name == "metainfo.zip"}
    with LocalServer(routes, max_seconds=60) as server:
        result = CliRunner().invoke(download_command, [
            str(tmp_path / "copy"), "--manifest", str(full / "manifest.json"), "--base-url", server.url + "/m",
            "--retries", "0"])
    assert result.exit_code == 1
    assert "--rehydrate" in result.output


def test_library_call_without_geometry_fails_clearly(published, tmp_path):
    build, _, _, _, _ = published
    target = tmp_path / "copy"
    for split in SPLITS:
        shutil.copytree(build / split, target / split, ignore=shutil.ignore_patterns("images"))
    with pytest.raises(RehydrateError, match="no crop geometry"):
        rehydrate(RehydrateConfig(dataset=target))


def test_images_already_there_are_kept_without_a_fetch(published, tmp_path):
    build, _, routes, _, _ = published
    target = metadata_copy(published, tmp_path)
    first = load_metainfo(build / "train")["0"]["photo_id"]
    for split in SPLITS:  # as if one license archive had come down: the images of one photo
        (target / split / "images").mkdir()
        for key, entry in load_metainfo(build / split).items():
            if entry["photo_id"] == first:
                shutil.copy(build / split / "images" / f"{key}.png", target / split / "images" / f"{key}.png")
    result, server = run_rehydrate(target, routes)
    assert result.exit_code == 0, result.output
    assert photo_paths(build)[first] not in {path for path, _ in server.requests}
    assert len(server.requests) == len(photo_paths(build)) - 1
    assert faces_of(target) == faces_of(build)


def test_changed_and_dropped_is_not_blocklisted(published, tmp_path):
    build, routes, paths, target = fresh_copy(published, tmp_path)
    changed = sorted(paths)[0]
    served = {**routes, paths[changed]: reencoded(routes[paths[changed]])}
    result, _ = run_rehydrate(target, served, "--changed", "drop")
    assert result.exit_code == 0, result.output
    blocked = blocklisted(target)
    assert str(changed) not in blocked


@pytest.mark.parametrize("where", ["before", "after"])
def test_killed_while_taking_faces_out_finishes_on_rerun(published, tmp_path, monkeypatch, where):
    build, _, routes, _, _ = published
    paths = photo_paths(build)
    gone = sorted(paths)[2]
    served = {**routes, paths[gone]: Redirect(PLACEHOLDER_PATH)}
    target = metadata_copy(published, tmp_path)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed")

    # before: the removal never started; after: it is done but the reports are not written
    monkeypatch.setattr(*((rehydrate_module, "remove_faces") if where == "before" else (rehydrate_module, "_write_md5s")),
                        killed)
    result, _ = run_rehydrate(target, served)
    assert result.exit_code == 1  # click reports the interrupt as Aborted
    assert (target / ".rehydrate" / "commit.json").is_file() and not (target / SUMMARY).exists()
    monkeypatch.undo()
    result, server = run_rehydrate(target, served)
    assert result.exit_code == 0, result.output
    assert not server.requests  # the fetching was done: only the removal is finished
    expected = {s: [f for f in faces if f[0]["photo_id"] != gone] for s, faces in faces_of(build).items()}
    assert faces_of(target) == expected
    ledger = (target / "removed.jsonl").read_text().splitlines()
    assert len(ledger) == faces_per_photo(build)[gone]  # taken out once
