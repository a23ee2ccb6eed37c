"""Reference backends with randomly initialised weights: the real code paths on real photos, no download."""

import threading

import numpy as np
import pytest
from click.testing import CliRunner

from fdf_build.cli import cli
from fdf_build.config import BuildConfig
from fdf_build.pipeline import BuildError, check_models

from .conftest import DEMO_DATA, load_rgb

torch = pytest.importorskip("torch")
reference = pytest.importorskip("fdf_build.reference")

PHOTOS = [load_rgb(DEMO_DATA / name) for name in ("codait_luciano.jpg", "pexels_woman_turned.jpg")]


@pytest.fixture(scope="module")
def dsfd():
    torch.manual_seed(0)
    # a low threshold so random weights still yield boxes to compare
    return reference.DSFDDetector(random_init=True, canvas=384, score_threshold=0.05)


def test_missing_weights_stop_the_build_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    config = BuildConfig(metadata=str(tmp_path / "never-read.tsv"), out=tmp_path / "out", detector="dsfd",
                         keypoints="keypointrcnn", weights_dir=tmp_path / "weights")
    with pytest.raises(BuildError) as e:
        check_models(config)
    message = str(e.value)
    assert "WIDERFace_DSFD_RES152.pth" in message and "https://folk.ntnu.no/haakohu/WIDERFace_DSFD_RES152.pth" in message
    assert str(tmp_path / "weights") in message and str(tmp_path / "torch" / "hub" / "checkpoints") in message
    result = CliRunner().invoke(cli, ["build", str(DEMO_DATA / "LICENSES.md"), "--out", str(tmp_path / "o"),
                                      "--keypoints", "keypointrcnn", "--weights-dir", str(tmp_path / "weights")])
    assert result.exit_code == 1 and "keypointrcnn_resnet50_fpn_coco-fc266e95.pth" in result.output
    assert not (tmp_path / "o").exists()


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


def test_dsfd_shapes_and_batch_equals_single(dsfd):
    batch = dsfd.detect_batch(PHOTOS)
    singles = [dsfd(p) for p in PHOTOS]
    for faces, single in zip(batch, singles):
        assert faces, "random weights at a 0.05 threshold should still give boxes"
        assert all(f.box.shape == (4,) and np.isnan(f.keypoints).all() for f in faces)
        top = lambda fs: np.array([f.box for f in sorted(fs, key=lambda f: -f.score)[:10]])  # noqa: E731
        np.testing.assert_allclose(top(faces), top(single), rtol=1e-3, atol=0.5)
        assert np.isfinite([f.box for f in faces]).all() and all(0.05 <= f.score <= 1 for f in faces)


def test_keypointrcnn_persons_and_matching():
    torch.manual_seed(0)
    model = reference.KeypointRCNN(random_init=True, canvas=256, person_threshold=0.0)
    persons = model.persons_batch(PHOTOS[:1])
    assert len(persons) == 1 and persons[0].ndim == 3 and persons[0].shape[1:] == (7, 2)
    from fdf_build.records import Face

    face = Face(box=np.array([10, 10, 50, 50], np.float32), score=0.9, keypoints=np.full((7, 2), np.nan, np.float32))
    neighbour = np.full((7, 2), 100.0)  # nose and eyes outside the box
    inside = np.array([[30, 30], [40, 20], [20, 20], [45, 25], [15, 25], [60, 70], [0, 70]], dtype=np.float32)
    (matched,) = model.match([face], np.stack([neighbour, inside]))
    np.testing.assert_array_equal(matched.keypoints, inside)
    assert matched.keypoint_model == model.name
    (unmatched,) = model.match([face], neighbour[None])
    assert np.isnan(unmatched.keypoints).all()


def test_face_alignment_landmarks_map_back_to_the_photo():
    torch.manual_seed(0)
    fan = reference.FaceAlignment68(random_init=True)
    box = np.array([136, 46, 265, 220], np.float32)
    points = fan.landmarks_batch(PHOTOS[0], [box, box + 3])
    assert points.shape == (2, 68, 2)
    side = 1.2 * 174  # the square around the box that FAN sees
    centre = np.array([(136 + 265) / 2, (46 + 220) / 2])
    assert (np.abs(points[0] - centre) <= side / 2 + 2).all()


def test_batcher_returns_each_caller_its_own_result():
    calls = []

    def double(items):
        calls.append(len(items))
        return [2 * i for i in items]

    batcher = reference.Batcher(double, batch_size=4, max_wait=0.05)
    results = {}

    def work(i):
        results[i] = batcher(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == {i: 2 * i for i in range(8)}
    assert max(calls) > 1 and sum(calls) == 8


def test_batcher_hands_failures_to_callers():
    def boom(items):
        raise RuntimeError("CUDA out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        reference.Batcher(boom, batch_size=2)(1)


def test_pipeline_stages_with_all_reference_backends():
    from fdf_build.geometry import square_around
    from fdf_build.pipeline import make_models
    from fdf_build.records import FaceCrop
    from fdf_build.synthetic import synthetic_photo
    from fdf_build.writer import face_record

    torch.manual_seed(0)
    config = BuildConfig(metadata="-", out=".", detector="dsfd", keypoints="keypointrcnn", landmarks="face-alignment",
                         detector_threshold=0.05, detect_max_side=256, batch_size=2)
    detector, keypoints = make_models(config, random_init=True)
    assert isinstance(detector(PHOTOS[0]), list)  # random weights: boxes are noise, so match on the real face
    from fdf_build.records import Face

    real = Face(box=np.array([136, 46, 265, 220], np.float32), score=0.9, keypoints=np.full((7, 2), np.nan, np.float32))
    faces = keypoints(PHOTOS[0], [real])
    assert faces and all(f.landmarks68.shape == (68, 2) for f in faces)
    t = square_around(faces[0].box, expand=2.0, out_size=64)
    record = face_record(FaceCrop(synthetic_photo(1), 0, faces[0], np.zeros((64, 64, 3), np.uint8),
                                  t.forward_box(faces[0].box), t.forward(faces[0].keypoints), "u"),
                         detector=detector.name, crawl_date="2026-01-01")
    assert len(record["landmarks68"]) == 68 and record["detector"].startswith("dsfd")
