"""Reference backends with randomly initialised weights: the real code paths on real photos, no download."""

import json
import threading
from collections import Counter

import numpy as np
import pytest
from click.testing import CliRunner

from fdf_build.cli.main import cli
from fdf_build.config import BuildConfig, BuildError
from fdf_build.models.stack import check_models

from .conftest import DEMO_DATA, load_rgb

torch = pytest.importorskip("torch")
reference = pytest.importorskip("fdf_build.models.reference")

PHOTOS = [load_rgb(DEMO_DATA / name) for name in ("codait_luciano.jpg", "pexels_woman_turned.jpg")]


def with_measured_batchnorm(backend, photos):
    """Random weights, but batch-norm statistics measured on real photos (as training would leave them).

    Untrained running statistics let activations grow through ResNet-152 until boxes are
    ~1e19 and tiny float differences decide everything; measured ones keep outputs comparable.
    """
    norms = [m for m in backend.net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a plain average over the calls below
        m.train()
    run = backend.detect_batch if hasattr(backend, "detect_batch") else backend.persons_batch
    for photo in photos:
        run([photo])
    backend.net.eval()
    return backend


@pytest.fixture(scope="module")
def dsfd():
    torch.manual_seed(0)
    # a low threshold so random weights still yield boxes to compare
    return with_measured_batchnorm(reference.DSFDDetector(random_init=True, max_side=384, score_threshold=0.05), PHOTOS)


def same_faces(a, b):
    assert len(a) == len(b)
    np.testing.assert_allclose([f.box for f in a], [f.box for f in b], rtol=1e-4, atol=1e-2)
    np.testing.assert_allclose([f.score for f in a], [f.score for f in b], atol=1e-5)


def in_threads(fn, items):
    """``fn`` called on each item from its own thread, as the build's workers call the batched backends."""
    results = [None] * len(items)

    def work(i):
        results[i] = fn(items[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(items))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def test_missing_weights_stop_the_build_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    config = BuildConfig(metadata=str(tmp_path / "never-read.tsv"), out=tmp_path / "out", detector="dsfd",
                         keypoints="keypointrcnn", weights_dir=tmp_path / "weights")
    with pytest.raises(reference.MissingWeights) as e:
        check_models(config)
    message = str(e.value)
    assert "WIDERFace_DSFD_RES152.pth" in message and "https://folk.ntnu.no/haakohu/WIDERFace_DSFD_RES152.pth" in message
    assert str(tmp_path / "weights") in message and str(tmp_path / "torch" / "hub" / "checkpoints") in message
    result = CliRunner().invoke(cli, ["build", str(DEMO_DATA / "LICENSES.md"), "--out", str(tmp_path / "o"),
                                      "--keypoints", "keypointrcnn", "--weights-dir", str(tmp_path / "weights")])
    assert result.exit_code == 2 and "keypointrcnn_resnet50_fpn_coco-fc266e95.pth" in result.output
    assert not (tmp_path / "o").exists()


def test_damaged_or_wrong_weights_stop_with_the_file_named(tmp_path, monkeypatch):
    from fdf_build.models.stack import make_models

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    weights = folder / "2DFAN4-11f355bf06.pth.tar"
    config = BuildConfig(metadata="-", out=tmp_path, keypoints="none", landmarks="face-alignment")
    wrong = torch.nn.Linear(2, 2).state_dict()
    for content in (b"<html>404 Not Found</html>", b"PK\x03\x04" + bytes(100), wrong):
        if isinstance(content, bytes):
            weights.write_bytes(content)
        else:
            torch.save(content, weights)
        check_models(config)  # it exists; only loading tells
        with pytest.raises(reference.WeightsError) as e:
            make_models(config)
        assert str(weights) in str(e.value) and "https://www.adrianbulat.com/" in str(e.value)
    result = CliRunner().invoke(cli, ["detect", str(DEMO_DATA / "codait_luciano.jpg"), "--keypoints", "none",
                                      "--landmarks", "face-alignment"])
    assert result.exit_code == 2 and "cannot be loaded as 2DFAN4-11f355bf06.pth.tar" in result.output
    assert "Traceback" not in result.output


def test_weights_are_found_in_the_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    original = reference.FaceAlignment68(random_init=True)
    torch.save(original.net.state_dict(), folder / "2DFAN4-11f355bf06.pth.tar")
    assert reference.find_weights("face-alignment", None) == folder / "2DFAN4-11f355bf06.pth.tar"
    loaded = reference.FaceAlignment68()  # loads the saved weights: same network, same output
    boxes = [np.array([136, 46, 265, 220], np.float32)]
    np.testing.assert_allclose(loaded.landmarks_batch(PHOTOS[0], boxes), original.landmarks_batch(PHOTOS[0], boxes))
    # the detect command finds them there too, and prints the landmarks of each face it detects
    photo = DEMO_DATA / "codait_luciano.jpg"
    result = CliRunner().invoke(cli, ["detect", str(photo), "--keypoints", "none", "--landmarks", "face-alignment",
                                      "--json"])
    assert result.exit_code == 0, result.output
    (face,) = json.loads(result.output)["faces"]
    expected = original.landmarks_batch(PHOTOS[0], [np.array(face["box"], np.float32)])[0]
    np.testing.assert_allclose(face["landmarks68"], expected, atol=0.02)


def test_dsfd_boxes_are_in_photo_pixels_and_batches_change_nothing(dsfd):
    mirrored = np.ascontiguousarray(PHOTOS[0][:, ::-1])
    singles = [dsfd(p) for p in (PHOTOS[0], mirrored, PHOTOS[1])]
    for faces, photo in zip(singles, (PHOTOS[0], mirrored, PHOTOS[1])):
        assert faces, "random weights at a 0.05 threshold should still give boxes"
        assert all(f.box.shape == (4,) and np.isnan(f.keypoints).all() and 0.05 <= f.score <= 1 for f in faces)
        boxes = np.array([f.box for f in faces])
        h, w = photo.shape[:2]  # photos larger than max_side: boxes come back scaled up to the photo
        assert boxes[:, 2].max() > 384 * 0.9 * w / max(h, w) and (boxes[:, [0, 2]] < 1.5 * w).all()
    # one size: one batch, no padding, each photo's own result
    for faces, single in zip(dsfd.detect_batch([PHOTOS[0], mirrored]), singles):
        same_faces(faces, single)
    # the batched stage, called from worker threads with photos of two sizes, groups them by size
    batched = reference.BatchedDetector(dsfd, batch_size=3)
    for faces, single in zip(in_threads(batched, [PHOTOS[0], PHOTOS[1], mirrored]), singles[:1] + singles[2:] + singles[1:2]):
        same_faces(faces, single)


def test_dsfd_pad_multiple_lets_near_sizes_share_a_batch_unchanged(dsfd):
    import copy

    padded = copy.copy(dsfd)  # the same network
    padded.pad_multiple = 64
    crop = np.ascontiguousarray(PHOTOS[0][:370, :380])
    assert dsfd.batch_key(dsfd.prepare(crop)) != dsfd.batch_key(dsfd.prepare(PHOTOS[0]))
    assert padded.batch_key(padded.prepare(crop)) == padded.batch_key(padded.prepare(PHOTOS[0])) == (384, 384)
    for faces, single in zip(padded.detect_batch([PHOTOS[0], crop]), [padded(PHOTOS[0]), padded(crop)]):
        same_faces(faces, single)
    # a photo already at a multiple is untouched by the option
    same_faces(padded(PHOTOS[0]), dsfd(PHOTOS[0]))


def test_keypointrcnn_persons_in_photo_pixels_and_batches_change_nothing():
    torch.manual_seed(0)
    model = reference.KeypointRCNN(random_init=True, max_side=256, person_threshold=0.0)
    # torchvision's own resize (800 px) and 100 persons per photo cost ~5 s a photo on 2 cores; smaller is the same path
    model.net.transform.min_size, model.net.transform.max_size = (320,), 512
    model.net.roi_heads.detections_per_img = 10
    model = with_measured_batchnorm(model, PHOTOS)
    mirrored = np.ascontiguousarray(PHOTOS[0][:, ::-1])
    singles = [model.persons_batch([p])[0] for p in (PHOTOS[0], mirrored, PHOTOS[1])]
    for persons, photo in zip(singles, (PHOTOS[0], mirrored, PHOTOS[1])):
        h, w = photo.shape[:2]
        assert persons.ndim == 3 and len(persons) > 0 and persons.shape[1:] == (7, 2)
        assert persons[..., 0].max() <= w + 1 and persons[..., 1].max() <= h + 1
        assert persons[..., 1].max() > 0.5 * h  # scaled back to the photo, not left at 256 px
    for persons, single in zip(model.persons_batch([PHOTOS[0], mirrored]), singles):
        np.testing.assert_allclose(persons, single, rtol=1e-4, atol=1e-2)
    # photos of other sizes that torchvision pads to one size batch unchanged too
    key = model.batch_key(model.prepare(PHOTOS[1]))
    crop = next(c for c in (PHOTOS[1][:h] for h in range(630, 560, -1))
                if model.batch_key(model.prepare(c)) == key and model.prepare(c).image.shape != model.prepare(PHOTOS[1]).image.shape)
    for persons, single in zip(model.persons_batch([PHOTOS[1], crop]), [singles[2], model.persons_batch([crop])[0]]):
        np.testing.assert_allclose(persons, single, rtol=1e-4, atol=1e-2)
    # the batched stage from worker threads, photos of two sizes: each face gets its photo's own best person
    from fdf_build.records import Face

    photos = (PHOTOS[0], PHOTOS[1], mirrored)
    best = [singles[0][0], singles[2][0], singles[1][0]]
    faces = [Face(box=np.r_[p[:3].min(0) - 1, p[:3].max(0) + 1].astype(np.float32), score=0.9,
                  keypoints=np.full((7, 2), np.nan, np.float32)) for p in best]
    batched = reference.BatchedKeypoints(model, batch_size=2)
    matched = in_threads(lambda i: batched(photos[i], [faces[i]]), [0, 1, 2])
    for (face,), person in zip(matched, best):
        np.testing.assert_allclose(face.keypoints, person, rtol=1e-4, atol=1e-2)


def test_keypointrcnn_matching_is_one_person_per_face_in_detection_order():
    from fdf_build.records import Face

    model = reference.KeypointRCNN.__new__(reference.KeypointRCNN)  # matching needs no network
    nan = np.full((7, 2), np.nan, np.float32)
    first = Face(box=np.array([10, 10, 50, 50], np.float32), score=0.9, keypoints=nan)
    overlapping = Face(box=np.array([5, 5, 55, 55], np.float32), score=0.8, keypoints=nan)
    neighbour = np.full((7, 2), 100.0)  # nose and eyes outside both boxes
    inside = np.array([[30, 30], [40, 20], [20, 20], [45, 25], [15, 25], [60, 70], [0, 70]], dtype=np.float32)
    also_inside = inside + 2
    a, b = model.match([first, overlapping], np.stack([neighbour, inside, also_inside]))
    np.testing.assert_array_equal(a.keypoints, inside)  # the best-scoring person that fits
    np.testing.assert_array_equal(b.keypoints, also_inside)  # the taken one is not given twice
    assert a.keypoint_model == b.keypoint_model == model.name
    a, b = model.match([first, overlapping], np.stack([neighbour, inside]))
    assert np.isnan(b.keypoints).all() and b.keypoint_model == ""


@pytest.fixture(scope="module")
def fan():
    torch.manual_seed(0)
    return reference.FaceAlignment68(random_init=True)


def test_face_alignment_landmarks_are_face_alignments_own(fan, monkeypatch):
    """face_alignment's API, given the same network (random weights) and boxes, finds the same landmarks."""
    from face_alignment import FaceAlignment, LandmarksType

    monkeypatch.setattr(FaceAlignment, "_load_native", lambda self, *args: fan.net)  # instead of a download
    upstream = FaceAlignment(LandmarksType.TWO_D, device="cpu", face_detector="folder", compile=False)
    # the face, with fractional coordinates, and a box crossing the photo's edge
    boxes = [np.array([130.3, 40.7, 270.1, 228.9], np.float32), np.array([-20, 300, 90, 420], np.float32)]
    ours = fan.landmarks_batch(PHOTOS[0], boxes)
    # the same boxes as float64: under numpy 2 upstream's own arithmetic keeps a float32 box's scale float32, which
    # torch refuses (its detectors give float64 boxes)
    wide = [b.astype(np.float64) for b in boxes]
    theirs = np.stack(upstream.get_landmarks_from_image(PHOTOS[0], detected_faces=wide))
    np.testing.assert_allclose(ours, theirs, atol=1e-3)
    assert len({tuple(p) for p in ours.reshape(-1, 2)}) > 10  # random weights, yet landmarks that differ


def test_face_alignment_landmarks_map_back_to_the_photo(fan):
    box = np.array([136, 46, 265, 220], np.float32)
    points = fan.landmarks_batch(PHOTOS[0], [box, box + 3])
    assert points.shape == (2, 68, 2)
    # the square FAN sees: side 200 (w + h) / 195, centred 0.12 h above the box's centre
    side = 200 * (129 + 174) / 195
    centre = np.array([(136 + 265) / 2, (46 + 220) / 2 - 0.12 * 174])
    assert (np.abs(points[0] - centre) <= side / 2 + 2).all()
    # batched across photos from worker threads: the same landmarks
    batched = reference.BatchedLandmarks(fan, batch_size=4)
    jobs = [(PHOTOS[0], [box, box + 3]), (PHOTOS[1], [np.array([120, 100, 300, 330], np.float32)])]
    results = in_threads(lambda job: batched.landmarks_batch(*job), jobs)
    for (photo, boxes), points in zip(jobs, results):
        np.testing.assert_allclose(points, fan.landmarks_batch(photo, boxes), atol=1e-3)
    assert sum(size * n for size, n in batched.batcher.batch_sizes.items()) == 3  # every face went through a batch


def test_batcher_returns_each_caller_its_own_result():
    calls = []

    def double(items):
        calls.append(len(items))
        return [2 * i for i in items]

    # groups go when full: max_wait, far past the few ms the threads take to call, never decides a batch
    batcher = reference.Batcher(double, batch_size=4, max_wait=60)
    assert in_threads(batcher, list(range(8))) == [2 * i for i in range(8)]
    assert calls == [4, 4]


def test_batcher_batches_only_items_of_one_size():
    calls = []

    def sizes(items):
        calls.append([i.shape for i in items])
        return [i.shape for i in items]

    batcher = reference.Batcher(sizes, batch_size=3, max_wait=60, key=lambda i: i.shape)
    items = [np.zeros((2, 3)), np.zeros((3, 2)), np.zeros((2, 3)), np.zeros((3, 2)), np.zeros((2, 3)), np.zeros((3, 2))]
    assert in_threads(batcher, items) == [i.shape for i in items]
    assert sorted(calls) == [[(2, 3)] * 3, [(3, 2)] * 3]  # each batch full, of one size
    assert batcher.batch_sizes == Counter({3: 2})


def test_batcher_hands_failures_to_callers():
    def boom(items):
        raise RuntimeError("CUDA out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        reference.Batcher(boom, batch_size=2)(1)
    # a bad item fails its own caller; the batcher serves the next one
    batcher = reference.Batcher(lambda items: [-i for i in items], batch_size=2, key=lambda i: 1 // i)
    with pytest.raises(ZeroDivisionError):
        batcher(0)
    assert batcher(3) == -3
    with pytest.raises(RuntimeError, match="0 results for 1 items"):
        reference.Batcher(lambda items: [], batch_size=2)(1)


def test_pipeline_stages_with_all_reference_backends():
    from fdf_build.models.stack import make_models

    torch.manual_seed(0)
    config = BuildConfig(metadata="-", out=".", detector="dsfd", keypoints="keypointrcnn", landmarks="face-alignment",
                         detector_threshold=0.05, detect_max_side=256, batch_size=2)
    detector, keypoints = make_models(config, random_init=True)
    # random weights: boxes are noise, so match on the real face (the build test runs the detector end to end)
    from fdf_build.records import Face

    real = Face(box=np.array([136, 46, 265, 220], np.float32), score=0.9, keypoints=np.full((7, 2), np.nan, np.float32))
    faces = keypoints(PHOTOS[0], [real])
    assert faces and all(f.landmarks68.shape == (68, 2) for f in faces)
    assert detector.name.startswith("dsfd") and keypoints.name.startswith("keypointrcnn")


def test_gpu_builds_keep_enough_photos_in_flight_to_fill_per_size_batches():
    gpu = BuildConfig(metadata="-", out=".", detector="dsfd", device="cuda", batch_size=16, workers=8)
    assert gpu.threads >= 2 * gpu.batch_size  # photos of two sizes can each fill a batch at once
    assert BuildConfig(metadata="-", out=".", detector="dsfd", device="cpu", batch_size=16, workers=8).threads == 8
    assert BuildConfig(metadata="-", out=".", device="cuda", workers=8).threads == 8  # no GPU model to feed


@pytest.mark.timeout(900)  # 47 s alone; over 300 s when the 2 cores are shared with other suites
def test_landmarks68_land_beside_the_keypoints_in_the_crop_frame_and_survive_removal(tmp_path, monkeypatch):
    from fdf_build.dataset.layout import verify_split
    from fdf_build.dataset.loader import FDF256Dataset
    from fdf_build.dataset.metainfo import points_array
    from fdf_build.demo import run_demo
    from fdf_build.geometry import CropGeometry
    from fdf_build.privacy import removal

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    (tmp_path / "torch" / "hub" / "checkpoints").mkdir(parents=True)
    torch.manual_seed(0)
    fan = reference.FaceAlignment68(random_init=True)
    torch.save(fan.net.state_dict(), tmp_path / "torch" / "hub" / "checkpoints" / "2DFAN4-11f355bf06.pth.tar")
    out = tmp_path / "demo"
    run_demo(out, landmarks="face-alignment", crawl_date="2026-01-01", val_fraction=0.0)
    split = out / "train"
    assert verify_split(split) == []
    landmarks68 = np.load(split / "landmarks68.npy")
    meta = json.loads((split / "fdf_metainfo.json").read_text())
    assert landmarks68.shape == (len(meta), 68, 2) and len(meta) > 0
    inside = 0
    for n, m in meta.items():
        # FAN's square (side 200 (w + h) / 195) is wider than the 1.4x crop: random-weight points may leave it
        crop = points_array(m["landmark68"])
        np.testing.assert_array_equal(landmarks68[int(n)], crop)
        # the crop frame is the photo frame moved and scaled as the face's crop was cut (crop_geometry.json)
        t = CropGeometry.of_dataset(out).transform(np.array(m["original_bounding_box"]))
        expected = t.forward(points_array(m["landmarks68"], n=68))
        found = ~np.isnan(crop[:, 0])
        assert ((expected[~found] < 0) | (expected[~found] > 256)).any(axis=1).all()  # null: outside the crop
        np.testing.assert_allclose(crop[found] * 256, expected[found], atol=0.6)
        inside += found.sum()
    assert inside > 68
    item = FDF256Dataset(out)[0]
    np.testing.assert_array_equal(item["landmarks68"], landmarks68[0])
    # removing a face renumbers landmarks68.npy with everything else
    plan = removal.plan_removal(out, nsids=[meta["0"]["user_nsid"]])
    mapping = removal.remove_faces(plan)["train"]
    after = np.load(split / "landmarks68.npy")
    kept = {int(old): new for old, new in mapping.items() if new is not None}
    assert len(after) == len(kept) < len(meta) and verify_split(split) == []
    for old, new in kept.items():
        np.testing.assert_array_equal(after[new], landmarks68[old])


@pytest.mark.timeout(900)  # ~3 min on 2 shared cores: three real networks, two photos
def test_a_build_with_every_reference_backend_writes_the_whole_layout(tmp_path, monkeypatch):
    """run_build with DSFD + keypoint R-CNN + face-alignment, weights (random, saved) found in the hub cache, through
    fetch, crop, shards, merge and verify; the faces written are the ones those weights detect in each photo."""
    from urllib.parse import urlsplit

    from fdf_build.dataset.layout import verify_dataset
    from fdf_build.localserver import LocalServer
    from fdf_build.pipeline import run_build
    from fdf_build.sources.metadata import format_line
    from fdf_build.sources.synthetic import synthetic_photo

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    init = reference.KeypointRCNN.__init__

    def smaller(self, **kw):  # torchvision's 800 px resize costs ~5 s a photo on 2 cores; smaller is the same path
        init(self, **kw)
        self.net.transform.min_size, self.net.transform.max_size = (320,), 512
        self.net.roi_heads.detections_per_img = 10

    monkeypatch.setattr(reference.KeypointRCNN, "__init__", smaller)
    torch.manual_seed(0)
    dsfd = with_measured_batchnorm(reference.DSFDDetector(random_init=True, max_side=256), PHOTOS)
    # random weights score hundreds of boxes; only the few largest pass this min_face, which keeps FAN's work small
    min_face = 300
    expected = [sorted(tuple(f.box) for f in dsfd(photo) if min(f.width, f.height) >= min_face) for photo in PHOTOS]
    assert all(expected)
    torch.save(dsfd.net.state_dict(), hub / reference.WEIGHTS["dsfd"][0])
    torch.save(reference.KeypointRCNN(random_init=True).net.state_dict(), hub / reference.WEIGHTS["keypointrcnn"][0])
    torch.save(reference.FaceAlignment68(random_init=True).net.state_dict(), hub / reference.WEIGHTS["face-alignment"][0])
    del dsfd
    names = ("codait_luciano.jpg", "pexels_woman_turned.jpg")
    photos = [synthetic_photo(i, nsid=nsid) for i, nsid in enumerate(("25@N00", "7240297@N05"))]  # val, train
    routes = {urlsplit(p.download_url).path: (DEMO_DATA / name).read_bytes() for p, name in zip(photos, names)}
    tsv = tmp_path / "yfcc.tsv"
    tsv.write_text("".join(format_line(p) + "\n" for p in photos))
    settings = dict(detector="dsfd", keypoints="keypointrcnn", landmarks="face-alignment", detect_max_side=256,
                    min_face=min_face, batch_size=2, workers=2, val_fraction=0.026, crawl_date="2026-01-01")
    with LocalServer(routes, max_seconds=300) as server:
        summary = run_build(BuildConfig(metadata=str(tsv), out=tmp_path / "out", base_url=server.url, **settings))
    assert summary.photos["fetched"] == 2 and summary.faces["kept"] == sum(map(len, expected))
    assert verify_dataset(tmp_path / "out") == {"train": [], "val": []}
    for split, photo, boxes in (("val", photos[0], expected[0]), ("train", photos[1], expected[1])):
        folder = tmp_path / "out" / split
        meta = json.loads((folder / "fdf_metainfo.json").read_text())
        n = len(meta)
        assert sorted(tuple(m["original_bounding_box"]) for m in meta.values()) == boxes
        assert {m["user_nsid"] for m in meta.values()} == {photo.user_nsid}
        assert all(m["detector"] == reference.DSFDDetector.name for m in meta.values())
        assert {m["keypoint_model"] for m in meta.values()} <= {reference.KeypointRCNN.name, ""}
        assert sorted(p.name for p in (folder / "images").iterdir()) == sorted(f"{i}.png" for i in range(n))
        assert load_rgb(folder / "images" / "0.png").shape == (256, 256, 3)
        assert np.load(folder / "landmarks.npy").shape == (n, 7, 2)
        assert np.load(folder / "bounding_box.npy").shape == (n, 4)
        landmarks68 = np.load(folder / "landmarks68.npy")
        assert landmarks68.shape == (n, 68, 2) and not np.isnan(landmarks68).all()
    # other weights under the same name are another input: the resume is refused, naming them
    torch.manual_seed(1)
    torch.save(reference.FaceAlignment68(random_init=True).net.state_dict(), hub / reference.WEIGHTS["face-alignment"][0])
    with pytest.raises(BuildError, match="the face-alignment weights are another file: 2DFAN4"):
        run_build(BuildConfig(metadata=str(tsv), out=tmp_path / "out", **settings))
