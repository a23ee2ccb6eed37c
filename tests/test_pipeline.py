import json
import os
import shutil
import threading
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from fdf_build.cli.main import cli
from fdf_build.config import BuildConfig, BuildError
from fdf_build.decode import decode_image
from fdf_build.demo import demo_metadata, demo_photos
from fdf_build.errors import BadInput
from fdf_build.files import read_jsonl
from fdf_build.localserver import Fault, LocalServer
from fdf_build.pipeline import run_build
from fdf_build.sources.filters import DEFAULT_LICENSES
from fdf_build.sources.metadata import format_line
from fdf_build.sources.synthetic import synthetic_photo
from fdf_build.split import split_of

from .conftest import DEMO_DATA
from .demo_faces import found_faces, kept_faces
from .s3server import bucket, objects, s3_endpoint  # noqa: F401 (fixtures)

SPLIT_FILES = ("fdf_metainfo.json", "landmarks.npy", "bounding_box.npy", "attribution.csv")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Demo photos plus three that misbehave: a truncated JPEG, a 429 with Retry-After, a 500 then success."""
    photos = demo_photos()
    records, routes = demo_metadata(photos)
    extra = {
        "short": synthetic_photo(100, nsid="trunc@N00"),
        "429": synthetic_photo(101, nsid="ratelimited@N00"),
        # an author that the 0.3 validation share puts in val, so both splits get faces
        "500": synthetic_photo(102, nsid=next(n for i in range(100) if split_of(n := f"flaky{i}@N00", 0.3) == "val")),
    }
    faults = {
        "short": [Fault("short")],
        "429": [Fault("status", 429, retry_after="1")],
        "500": [Fault("status", 500)],
    }
    path_faults = {}
    for key, photo in extra.items():
        path = urlsplit(photo.download_url).path
        routes[path] = photos["whitehouse_obama_biden.jpg"]
        path_faults[path] = faults[key]
    records += list(extra.values())
    tsv = tmp_path_factory.mktemp("meta") / "yfcc.tsv"
    tsv.write_text("".join(format_line(p) + "\n" for p in records))
    return tsv, routes, path_faults, photos


def build(world, out, **kw):
    tsv, routes, faults, _ = world
    with LocalServer(routes, {k: list(v) for k, v in faults.items()}, max_seconds=120) as server:
        config = BuildConfig(
            **{"metadata": str(tsv), "out": out, "base_url": server.url, "crawl_date": "2026-01-01",
               "val_fraction": 0.3, **kw}
        )
        return run_build(config)


@pytest.fixture(scope="module")
def built(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("build")
    return out, build(world, out, workers=4, shard_size=3)


def test_summary_counts_every_outcome(built, world):
    out, summary = built
    s = summary.to_dict()
    photos = world[3]
    assert s["selection"]["rejected"] == {"video": 1, "license_not_allowed": 1, "opted_out": 1}
    assert s["photos"] == {"tried": len(photos) + 1 + 3, "fetched": len(photos) + 3}
    assert s["skipped"]["photo_removed"] == 1
    assert s["skipped"]["decode_error"] == 1
    assert s["skipped"]["no_face"] == 1
    # what to find and keep comes from the annotated faces (demo_faces), not from this build's detector and filters;
    # the 429 and 500 photos, served obama_biden's bytes, come through on a retry
    fetched = [*photos, "whitehouse_obama_biden.jpg", "whitehouse_obama_biden.jpg"]
    found, kept = sum(map(found_faces, fetched)), sum(map(kept_faces, fetched))
    assert s["faces"] == {"found": found, "too_small": found - kept, "kept": kept, "unmatched": 0}
    assert (found, kept) == (21, 15)  # written down once
    assert sum(s["splits"].values()) == kept
    assert json.loads((out / "stats.json").read_text()) == s


def test_layout_shapes_and_keypoints_inside_crops(built):
    out, summary = built
    total = 0
    for split in ("train", "val"):
        d = out / split
        meta = json.loads((d / "fdf_metainfo.json").read_text())
        n = len(meta)
        total += n
        assert sorted(meta, key=int) == [str(i) for i in range(n)]
        assert sorted(p.name for p in (d / "images").iterdir()) == sorted(f"{i}.png" for i in range(n))
        landmarks, boxes = np.load(d / "landmarks.npy"), np.load(d / "bounding_box.npy")
        assert landmarks.shape == (n, 7, 2) and landmarks.dtype == np.float32
        assert boxes.shape == (n, 4) and np.issubdtype(boxes.dtype, np.integer)
        for i in range(n):
            m = meta[str(i)]
            image = cv2.imread(str(d / "images" / f"{i}.png"))
            assert image.shape == (256, 256, 3)
            # every face matched a person: all 7 keypoints, clamped into the crop as DP2's get_crop does
            assert np.isfinite(landmarks[i]).all() and ((landmarks[i] >= 0) & (landmarks[i] <= 1)).all()
            assert len(m["keypoint_scores"]) == 7 and m["keypoints_missing"] == []
            np.testing.assert_allclose(np.array(m["bounding_box"]) * 256, boxes[i], atol=0.51)
            x0, y0, x1, y1 = m["original_bounding_box"]
            assert x1 - x0 >= 64 and y1 - y0 >= 64
            assert m["license_url"].startswith("http://creativecommons.org/licenses/")
            assert m["download_url"].startswith("http://farm") and "127.0.0.1" not in m["download_url"]
            assert m["photo_url"] == f"http://www.flickr.com/photos/{m['user_nsid']}/{m['photo_id']}/"
            assert m["category"] == {"train": "training", "val": "validation"}[split]
            assert isinstance(m["yfcc100m_line_idx"], str) and int(m["yfcc100m_line_idx"]) >= 0
            assert set(m["keypoints_missing"]) == {
                name for name, p in zip(
                    ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder"),
                    m["original_landmark"]) if p is None
            }
        with open(d / "attribution.csv") as f:
            rows = f.read().splitlines()
        assert rows[0].startswith("photo_id,author,") and len(rows) - 1 == len({m["photo_id"] for m in meta.values()})
    assert total == summary.faces["kept"]
    # no author in both splits
    authors = [{m["user_nsid"] for m in json.loads((out / s / "fdf_metainfo.json").read_text()).values()}
               for s in ("train", "val")]
    assert authors[0] and authors[1] and not authors[0] & authors[1]


def test_crops_are_fdf256s_cut_of_the_photo_and_the_dataset_records_how(built, world):
    from fdf_build.geometry import CropGeometry, recompute_crop

    out, _ = built
    _, routes, _, _ = world
    geometry = CropGeometry.of_dataset(out)
    assert (out / "crop_geometry.json").is_file() and geometry == CropGeometry(1.4, 256, "clamp")
    for split in ("train", "val"):
        d = out / split
        meta = json.loads((d / "fdf_metainfo.json").read_text())
        boxes, landmarks = np.load(d / "bounding_box.npy"), np.load(d / "landmarks.npy")
        for n, m in meta.items():
            photo = decode_image(routes[urlsplit(m["download_url"]).path])
            box = np.array(m["original_bounding_box"])
            assert (box == np.round(box)).all()  # the whole-pixel box the crop was cut around
            expected, t = recompute_crop(photo, box, geometry)
            stored = cv2.cvtColor(cv2.imread(str(d / "images" / f"{n}.png")), cv2.COLOR_BGR2RGB)
            np.testing.assert_array_equal(stored, expected)
            # 1.4x the longer side, the box where it was in the photo, within DP2's integer rounding
            assert abs(t.side - 1.4 * max(box[2] - box[0], box[3] - box[1])) <= 2
            np.testing.assert_allclose(boxes[int(n)], (box - [t.x0, t.y0] * 2) * 256 / t.side, atol=1)
            found = landmarks[int(n)][~np.isnan(landmarks[int(n)]).any(axis=1)]
            assert ((found >= 0) & (found <= 1)).all()


def test_a_default_build_loads_as_deepprivacy2s_fdf256dataset_reads_it(built):
    """What DP2's FDF256Dataset(load_keypoints=True) does with a split: images sorted by number, landmarks
    reshaped to (-1, 7, 2), boxes as the inpainting mask; every keypoint finite in [0, 1]."""
    out, _ = built
    for split in ("train", "val"):
        d = out / split
        paths = sorted((d / "images").glob("*.png"), key=lambda p: int(p.stem))
        landmarks = np.load(d / "landmarks.npy").reshape(-1, 7, 2).astype(np.float32)
        boxes = np.load(d / "bounding_box.npy")
        assert len(paths) == len(landmarks) == len(boxes) > 0
        assert np.isfinite(landmarks).all() and landmarks.min() >= 0 and landmarks.max() <= 1
        for i, path in enumerate(paths):
            assert cv2.imread(str(path)).shape == (256, 256, 3)
            mask = np.ones((256, 256), dtype=bool)
            x0, y0, x1, y1 = boxes[i]
            mask[y0:y1, x0:x1] = False
            assert 0 <= x0 < x1 <= 256 and 0 <= y0 < y1 <= 256 and 0.1 < 1 - mask.mean() < 0.8


def test_build_leaves_a_fresh_search_index(built):
    from fdf_build.privacy import index as privacy_index

    out, _ = built
    for split in ("train", "val"):
        meta = out / split / "fdf_metainfo.json"
        index = meta.with_name(meta.name + ".index")
        written = index.stat().st_mtime_ns
        nsid = next(iter(json.loads(meta.read_text()).values()))["user_nsid"]
        assert privacy_index.search(meta, nsids=[nsid])
        assert index.stat().st_mtime_ns == written  # used as is, not rebuilt on first search


def test_unmatched_faces_are_dropped_as_fdf256_did_unless_kept(built, world, tmp_path):
    from fdf_build.models.faces import RetinaFaceDetector

    def faces(out):
        return {(m["yfcc100m_line_idx"], tuple(m["original_bounding_box"])): m["keypoint_model"]
                for split in ("train", "val") for m in json.loads((out / split / "fdf_metainfo.json").read_text()).values()}

    # the default (BlazePose, then MoveNet) matches every face of these photos; BlazePose alone does not
    assert RetinaFaceDetector.name not in faces(built[0]).values() and built[1].faces["unmatched"] == 0
    build(world, tmp_path / "keep", keypoints="mediapipe", unmatched="keep")
    kept = faces(tmp_path / "keep")
    unmatched = {k for k, model in kept.items() if model == RetinaFaceDetector.name}
    assert unmatched, "the demo photos hold a face BlazePose does not match"
    summary = build(world, tmp_path / "drop", keypoints="mediapipe").to_dict()
    assert set(faces(tmp_path / "drop")) == set(kept) - unmatched
    assert summary["faces"]["unmatched"] == len(unmatched)
    assert summary["faces"]["kept"] == len(kept) - len(unmatched)
    lines = {line for line, _ in kept}
    emptied = {line for line in lines if all(k in unmatched for k in kept if k[0] == line)}
    assert summary["skipped"].get("no_matched_person", 0) == len(emptied)
    with pytest.raises(BadInput, match="needs a keypoint model"):
        BuildConfig(metadata="-", out=tmp_path, keypoints="none", unmatched="drop")
    assert BuildConfig(metadata="-", out=tmp_path, keypoints="none").unmatched == "keep"


def dataset_bytes(out: Path) -> dict:
    files = {}
    for split in ("train", "val"):
        for name in SPLIT_FILES:
            files[f"{split}/{name}"] = (out / split / name).read_bytes()
        for p in (out / split / "images").iterdir():
            files[f"{split}/images/{p.name}"] = p.read_bytes()
    return files


def test_same_input_gives_identical_output_whatever_the_parallelism(built, world, tmp_path):
    out, _ = built
    build(world, tmp_path / "again", workers=1, shard_size=100)
    assert dataset_bytes(tmp_path / "again") == dataset_bytes(out)


def test_resume_redoes_only_incomplete_shards(built, world, tmp_path):
    out, _ = built
    again = tmp_path / "resumed"
    build(world, again, workers=4, shard_size=3)
    shard = again / ".work" / "shard_00001"
    (shard / "_stats.json").unlink()  # as if killed while writing this shard
    next((shard / "faces").iterdir()).write_bytes(b"half a png")
    summary = build(world, again, workers=2, shard_size=3)
    assert summary.shards["built"] == 1 and summary.shards["resumed"] >= 3
    assert dataset_bytes(again) == dataset_bytes(out)


def test_resume_with_other_settings_is_refused_unless_restarted(built, world, tmp_path):
    out, _ = built
    with pytest.raises(BuildError, match="other settings"):
        build(world, out, workers=4, shard_size=3, min_face=32)
    tsv, routes, faults, _ = world
    target = tmp_path / "r"
    build(world, target, shard_size=3)
    with LocalServer(routes, max_seconds=60) as server:
        args = ["build", str(tsv), "--out", str(target), "--base-url", server.url, "--min-face", "32"]
        refused = CliRunner().invoke(cli, args)
        assert refused.exit_code == 1 and "--restart" in refused.output
        restarted = CliRunner().invoke(cli, [*args, "--restart", "--keypoints", "none"])
    assert restarted.exit_code == 0, restarted.output
    assert json.loads((target / ".work" / "build.json").read_text())["config"]["min_face"] == 32


def refusal(built, world, **changes) -> str:
    """The one-line error of a resume of the module's build with ``changes``; the build is left as it was."""
    out, _ = built
    before = (out / ".work" / "build.json").read_bytes()
    with pytest.raises(BuildError) as e:
        build(world, out, workers=4, shard_size=3, **changes)
    message = str(e.value)
    assert "\n" not in message and "--restart" in message and str(out) in message
    assert (out / ".work" / "build.json").read_bytes() == before
    return message


def test_a_resume_over_another_metadata_file_is_refused(built, world, tmp_path):
    lines = world[0].read_text().splitlines(keepends=True)
    for name, text in (("fewer.tsv", "".join(lines[:-1])), ("edited.tsv", "".join(lines).replace("\t", "\t ", 1))):
        (tmp_path / name).write_text(text)
        message = refusal(built, world, metadata=str(tmp_path / name))
        assert f"the metadata file is another one: yfcc.tsv ({len(''.join(lines).encode()):,} bytes" in message
        assert f"{name} ({len(text.encode()):,} bytes" in message


@pytest.mark.parametrize("changes, named", [
    (dict(licenses=("by",)), "licenses was "),
    (dict(expand=2.0), "expand was 1.4, now 2.0"),
    (dict(keypoints_outside="nan"), "keypoints_outside was clamp, now nan"),
    (dict(size=128), "size was 256, now 128"),
    (dict(min_face=32), "min_face was 64, now 32"),
    (dict(keypoints="mediapipe"), "keypoints was mediapipe+movenet, now mediapipe"),
    (dict(unmatched="keep"), "unmatched was drop, now keep"),
    (dict(detector_threshold=0.7), "detector_threshold was 0.5, now 0.7"),
])
def test_a_resume_with_other_settings_names_them(built, world, changes, named):
    message = refusal(built, world, **changes)
    assert named in message and message.count(" was ") == 1


def test_a_moved_metadata_file_and_reordered_licenses_resume(built, world, tmp_path):
    out, summary = built
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    moved = tmp_path / "moved.tsv"
    shutil.copy(world[0], moved)
    again = build(world, copy, workers=4, shard_size=3, metadata=str(moved), licenses=tuple(reversed(DEFAULT_LICENSES)))
    assert again.shards["built"] == 0 and again.shards["resumed"] == sum(summary.shards.values())
    assert dataset_bytes(copy) == dataset_bytes(out)


def faces_by_photo(out: Path) -> dict:
    return {(m["photo_id"], m["face_index"]): m for split in ("train", "val")
            for m in json.loads((out / split / "fdf_metainfo.json").read_text()).values()}


def test_a_grown_blocklist_resumes_without_fetching_or_shifting_photos(built, world, tmp_path):
    """Blocking a photo of a finished shard must not move later photos between shards (one would be lost)."""
    out, _ = built
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    work = copy / ".work"
    finished, pending = work / "shard_00000", work / "shard_00001"
    with_faces = lambda shard: sorted({r["photo_id"] for r in read_jsonl(shard / "faces.jsonl")})  # noqa: E731
    blocked_done, blocked_pending = with_faces(finished)[0], with_faces(pending)[0]
    (pending / "_stats.json").unlink()  # as if the build had been killed in this shard
    blocklist = tmp_path / "blocklist.txt"
    blocklist.write_text(f"{blocked_done}\n{blocked_pending}  # asked to be removed\n")
    tsv, routes, _, _ = world
    pending_path = next(urlsplit(r["url"]).path for r in read_jsonl(pending / "photos.jsonl")
                        if r["photo_id"] == blocked_pending)
    with LocalServer(routes, max_seconds=120) as server:
        summary = run_build(BuildConfig(metadata=str(tsv), out=copy, base_url=server.url, crawl_date="2026-01-01",
                                        val_fraction=0.3, workers=4, shard_size=3, blocklist=blocklist))
        assert not server.hits(pending_path) and server.requests  # the shard was redone, the photo not fetched
    assert summary.shards["built"] == 1 and summary.skipped["blocklisted"] == 1
    before, after = faces_by_photo(out), faces_by_photo(copy)
    assert not any(pid == blocked_pending for pid, _ in after)
    kept = lambda faces: {k: v for k, v in faces.items() if k[0] not in (blocked_done, blocked_pending)}  # noqa: E731
    assert kept(after) == kept(before)
    # removing entries from the blocklist is another input: refused
    blocklist.write_text(f"{blocked_pending}\n")
    with pytest.raises(BuildError, match=f"1 entry was removed from the blocklist \\({blocked_done}\\).*--restart"):
        build(world, copy, workers=4, shard_size=3, blocklist=blocklist)


def test_a_removed_owner_stays_out_of_the_next_real_build(built, world, tmp_path):
    """`fdf-build remove` on a build, then a new build given the blocklist it wrote: none of the owner's photos are
    selected (so none is fetched), and every other face comes out as before."""
    out, summary = built
    published = tmp_path / "published"
    shutil.copytree(out, published)
    before = faces_by_photo(out)
    nsid = next(iter(before.values()))["user_nsid"]
    theirs = {p.photo_id for p in _records(world) if p.user_nsid == nsid}
    removed = CliRunner().invoke(cli, ["remove", str(published), "--user-nsid", nsid])
    assert removed.exit_code == 0, removed.output
    again = build(world, tmp_path / "rebuilt", workers=4, shard_size=3, blocklist=published / "blocklist.txt")
    assert again.selection["rejected"]["blocklisted"] == len(theirs)
    assert again.photos["tried"] == summary.photos["tried"] - len(theirs)
    after = faces_by_photo(tmp_path / "rebuilt")
    assert after == {k: v for k, v in before.items() if v["user_nsid"] != nsid} and len(after) < len(before)


def _records(world) -> list:
    from fdf_build.sources.metadata import open_metadata, read_photos

    with open_metadata(world[0]) as lines:
        return list(read_photos(lines))


def test_build_cli_limit_and_summary(world, tmp_path):
    tsv, routes, _, _ = world
    with LocalServer(routes, max_seconds=60) as server:
        result = CliRunner().invoke(
            cli,
            ["build", str(tsv), "--out", str(tmp_path / "o"), "--base-url", server.url, "--limit", "2",
             "--keypoints", "none", "--attributes"],
        )
    assert result.exit_code == 0, result.output
    assert "photos: 2 tried, 2 fetched" in result.output
    meta = json.loads((tmp_path / "o" / "train" / "fdf_metainfo.json").read_text())
    assert meta and all(m["keypoints_missing"] == ["left_ear", "right_ear", "left_shoulder", "right_shoulder"]
                        for m in meta.values())
    attributes = (tmp_path / "o" / "train" / "attributes.jsonl").read_text().splitlines()  # --attributes
    assert len(attributes) == len(meta) and all("blur" in json.loads(a)["faceAttributes"] for a in attributes)


def test_demo_command_runs_offline(tmp_path):
    result = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    assert "1 removed from Flickr" in result.output
    assert (tmp_path / "demo" / "train" / "images" / "0.png").is_file()
    assert (tmp_path / "demo" / "demo_yfcc100m.tsv").is_file()


def test_demo_photos_are_the_bundled_ones():
    assert set(demo_photos()) == {p.name for p in DEMO_DATA.glob("*.jpg")}


def test_build_killed_with_sigkill_resumes_to_identical_output(world, tmp_path):
    """A real `fdf-build build` process killed mid-run, then re-run, ends byte-identical to an uninterrupted build."""
    import signal
    import subprocess
    import sys
    import time

    tsv, routes, _, _ = world
    target = tmp_path / "killed"
    # a photo of the second shard is answered only after the kill, so the kill lands after the first shard
    # completed and before the build can finish, however fast or slow this machine is
    killed = threading.Event()
    held = urlsplit(synthetic_photo(3).download_url).path
    with LocalServer(routes, {held: [Fault("stall", release=killed)]}, max_seconds=120) as server:
        args = [sys.executable, "-m", "fdf_build", "build", str(tsv), "--out", str(target), "--base-url",
                server.url, "--workers", "2", "--shard-size", "3", "--crawl-date", "2026-01-01",
                "--val-fraction", "0.3"]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        marker = target / ".work" / "shard_00000" / "_stats.json"
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed.set()
        assert marker.exists() and not (target / "stats.json").exists()
        assert not (target / ".work" / "shard_00001" / "_stats.json").exists()
    # the faulty photos of the module's world are served cleanly now; their outcome differs from the
    # uninterrupted build, so compare against a clean uninterrupted build of the same server
    with LocalServer(routes, max_seconds=120) as server:
        args[args.index("--base-url") + 1] = server.url
        assert subprocess.run(args, capture_output=True).returncode == 0
        assert subprocess.run([*args[:6], str(tmp_path / "clean"), *args[7:]], capture_output=True).returncode == 0
    assert dataset_bytes(target) == dataset_bytes(tmp_path / "clean")
    stats = json.loads((target / "stats.json").read_text())
    assert stats["shards"]["resumed"] >= 1


def test_retry_failed_recovers_transient_failures(world, tmp_path):
    tsv, routes, _, _ = world
    flaky = urlsplit(synthetic_photo(0).download_url).path  # first demo photo: fails all its tries
    with LocalServer(routes, {flaky: [Fault("status", 503)] * 50}, max_seconds=120) as server:
        config = BuildConfig(metadata=str(tsv), out=tmp_path / "b", base_url=server.url, crawl_date="2026-01-01",
                             val_fraction=0.3, retries=1, shard_size=4)
        first = run_build(config)
    assert first.skipped["http_5xx"] == 1
    with LocalServer(routes, max_seconds=120) as server:
        result = CliRunner().invoke(cli, ["retry-failed", str(tmp_path / "b"), "--base-url", server.url])
        assert result.exit_code == 0, result.output
        clean = run_build(BuildConfig(metadata=str(tsv), out=tmp_path / "clean", base_url=server.url,
                                      crawl_date="2026-01-01", val_fraction=0.3, shard_size=4))
    stats = json.loads((tmp_path / "b" / "stats.json").read_text())
    assert stats["photos"]["retried"] == 1 and "http_5xx" not in stats["skipped"]
    assert stats["faces"] == dict(clean.faces)
    assert dataset_bytes(tmp_path / "b") == dataset_bytes(tmp_path / "clean")


def test_retry_failed_needs_a_finished_build(tmp_path):
    result = CliRunner().invoke(cli, ["retry-failed", str(tmp_path)])
    assert result.exit_code == 2 and "holds no build" in result.output


@pytest.fixture(scope="module")
def local_ray(s3_endpoint):
    """One Ray for this module's tests (it takes seconds to start), started after the S3 server's environment
    is set, so its workers reach the server as the driver does."""
    ray = pytest.importorskip("ray")
    from fdf_build.distributed import start_local_ray

    from .loopback import descendants, listening_addresses

    start_local_ray(num_cpus=2)
    yield listening_addresses(descendants(os.getpid()))
    ray.shutdown()


def test_ray_executor_gives_the_local_output(built, world, local_ray, tmp_path):
    from .loopback import is_loopback

    out, _ = built
    summary = build(world, tmp_path / "ray", workers=4, shard_size=3, executor="ray")
    assert len(local_ray) >= 3 and all(map(is_loopback, local_ray)), local_ray  # GCS, raylet, workers
    assert summary.shards["built"] >= 4
    assert dataset_bytes(tmp_path / "ray") == dataset_bytes(out)


def test_ray_build_to_object_storage_gives_the_local_output(built, world, local_ray, bucket, tmp_path):
    """Actors build shards on their own disks and store them in S3; the driver merges from there and uploads the
    dataset: what lands in the bucket is the local build, and a re-run resumes from the stored shards."""
    import fsspec

    out, _ = built
    url = f"{bucket}/fdf"
    # the driver's folder has the local build's name: the dataset card is titled after it
    summary = build(world, tmp_path / "driver" / out.name, workers=4, shard_size=3, executor="ray", out_url=url)
    stored = objects(url)
    assert summary.shards["built"] >= 4 and sum(n.endswith("_stats.json") for n in stored) == summary.shards["built"]
    in_splits = lambda name: name.split("/")[0] in ("train", "val") and not name.endswith(".index")  # noqa: E731
    local = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert {n: data for n, data in stored.items() if in_splits(n)} == {n: d for n, d in local.items() if in_splits(n)}
    assert stored["README.md"] == local["README.md"] and dataset_bytes(out).keys() <= stored.keys()
    assert json.loads(stored["stats.json"])["splits"] == json.loads((out / "stats.json").read_text())["splits"]
    # another driver, with the local executor, resumes from the store alone: the last shard is gone from it
    last = max(n for n in stored if n.endswith("_stats.json"))
    fsspec.filesystem("s3").rm([f"{url}/{last}", f"{url}/{last.replace('_stats.json', '.tar')}"])
    again = build(world, tmp_path / "elsewhere" / out.name, workers=4, shard_size=3, out_url=url)
    assert (again.shards["resumed"], again.shards["built"]) == (summary.shards["built"] - 1, 1)
    # the shard built again is back in the store (its photos.jsonl names this run's server); the dataset is the same
    now = objects(url)
    assert now.keys() == stored.keys()
    dataset = lambda found: {k: v for k, v in found.items() if not k.startswith(".work/") and k != "stats.json"}  # noqa
    assert dataset(now) == dataset(stored)


def test_a_removal_from_a_stored_dataset_leaves_no_byte_of_the_owners_faces(built, world, bucket, tmp_path):
    """`fdf-build remove s3://...` on a build stored in S3: afterwards no object holds one of the owner's face PNGs,
    the stored shards included; the stored splits are what the same removal makes of the local build; a build
    resumed into the store (its ledger pulled) brings none back."""
    import fsspec

    out, _ = built
    url = f"{bucket}/fdf"
    build(world, tmp_path / "driver" / out.name, workers=4, shard_size=3, out_url=url)
    nsid = json.loads((out / "train" / "fdf_metainfo.json").read_text())["0"]["user_nsid"]
    pngs = [(out / split / "images" / f"{n}.png").read_bytes() for split in ("train", "val")
            for n, e in json.loads((out / split / "fdf_metainfo.json").read_text()).items() if e["user_nsid"] == nsid]
    holding = lambda found: sorted({n for n, data in found.items() for png in pngs if png in data})  # noqa: E731
    assert any(n.startswith(".work/shard_") for n in holding(objects(url)))  # the shard tars hold them at first
    # a shard stored without its stats (a build cut off between the two): faces nothing checked, deleted
    last = max(n for n in objects(url) if n.endswith("_stats.json"))
    fsspec.filesystem("s3").rm(f"{url}/{last}")

    result = CliRunner().invoke(cli, ["remove", url, "--user-nsid", nsid])
    assert result.exit_code == 0, result.output
    assert f"{len(pngs)} face(s) removed; ledger {url}/removed.jsonl" in result.output
    stored = objects(url)
    assert holding(stored) == [] and last.replace("_stats.json", ".tar") not in stored
    assert nsid in stored["blocklist.txt"].decode() and nsid in stored["removed.jsonl"].decode()

    local = shutil.copytree(out, tmp_path / "local" / out.name)
    assert CliRunner().invoke(cli, ["remove", str(local), "--user-nsid", nsid]).exit_code == 0
    in_splits = lambda name: name.split("/")[0] in ("train", "val") and not name.endswith(".index")  # noqa: E731
    local_files = {p.relative_to(local).as_posix(): p for p in local.rglob("*") if p.is_file()}
    assert {n: d for n, d in stored.items() if in_splits(n)} == \
        {n: p.read_bytes() for n, p in local_files.items() if in_splits(n)}

    again = build(world, tmp_path / "elsewhere" / out.name, workers=4, shard_size=3, out_url=url)
    assert again.shards["built"] == 1  # the shard deleted above, made again without the removed owner's photos
    now = objects(url)
    assert holding(now) == []
    rebuilt = {n: d for n, d in stored.items() if in_splits(n) and not n.endswith("/renumbering.json")}
    assert {n: d for n, d in now.items() if in_splits(n)} == rebuilt  # a merge numbers afresh: no renumbering left
    assert CliRunner().invoke(cli, ["remove", f"{bucket}/nothing", "--user-nsid", nsid]).exit_code == 2
