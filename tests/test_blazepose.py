"""BlazePose without the mediapipe package: MediaPipe's graph steps on hand-worked numbers, then the whole pipeline
against mediapipe 0.10.21's own answers on real photos (recorded by tools/record_mediapipe_pose.py)."""

import json
import math

import cv2
import numpy as np
import pytest

from fdf_build.models import blazepose as B

from .conftest import FACES, load_rgb


def test_anchors_follow_mediapipes_layers():
    anchors = B.ssd_anchors()
    assert anchors.shape == (2254, 2)  # 28*28*2 + 14*14*2 + 7*7*6
    # stride 8: 28 x 28 cells, 2 anchors per cell, rows of 56
    np.testing.assert_allclose(anchors[0], (0.5 / 28, 0.5 / 28))
    np.testing.assert_allclose(anchors[1], anchors[0])
    np.testing.assert_allclose(anchors[2], (1.5 / 28, 0.5 / 28))
    np.testing.assert_allclose(anchors[56], (0.5 / 28, 1.5 / 28))
    # stride 16 starts at 1568
    np.testing.assert_allclose(anchors[1567], (27.5 / 28, 27.5 / 28))
    np.testing.assert_allclose(anchors[1568], (0.5 / 14, 0.5 / 14))
    # the three stride-32 layers share one 7 x 7 grid: 6 anchors per cell, from 1960
    np.testing.assert_allclose(anchors[1960:1966], np.tile((0.5 / 7, 0.5 / 7), (6, 1)))
    np.testing.assert_allclose(anchors[1966], (1.5 / 7, 0.5 / 7))
    np.testing.assert_allclose(anchors[-1], (6.5 / 7, 6.5 / 7))


def test_decode_is_relative_to_the_anchor_in_input_pixels():
    raw = np.zeros((1, 12))
    raw[0, :4] = (22.4, -11.2, 44.8, 22.4)  # x, y offsets and w, h in 224 px input pixels
    raw[0, 4:6] = (224, 224)  # keypoint 0: one whole input further
    boxes, keypoints = B.decode(raw, np.array([[0.5, 0.5]]))
    np.testing.assert_allclose(boxes[0], (0.5, 0.4, 0.7, 0.5))  # centre (0.6, 0.45), half sizes 0.1, 0.05
    np.testing.assert_allclose(keypoints[0], [(1.5, 1.5), (0.5, 0.5), (0.5, 0.5), (0.5, 0.5)])


def test_best_detection_is_the_score_weighted_mean_of_its_overlaps():
    boxes = np.array([[0, 0, 1, 1],       # best: score 0.75
                      [0, 0, 1, 0.5],     # IoU 0.5 with the best, score 0.5: averaged in
                      [2, 2, 3, 3],       # score 0.6 but elsewhere: not averaged
                      [0, 0, 1, 0.9],     # overlaps, but scores under min_score: dropped before anything
                      [0, 0, -1, 1.0]])   # negative width: dropped, as MediaPipe drops it
    keypoints = np.zeros((5, 4, 2))
    keypoints[0, 0], keypoints[1, 0], keypoints[2, 0] = (1, 1), (0, 0), (9, 9)
    logits = np.array([math.log(3), 0.0, math.log(1.5), -5.0, 50.0])
    box, points, score = B.best_detection(boxes, keypoints, logits, min_score=0.3)
    assert score == pytest.approx(0.75)
    np.testing.assert_allclose(box, (0, 0, 1, (1 * 0.75 + 0.5 * 0.5) / 1.25))
    np.testing.assert_allclose(points[0], (0.6, 0.6))  # (1 * 0.75 + 0 * 0.5) / 1.25
    assert B.best_detection(boxes[:2], keypoints[:2], logits[:2], min_score=0.8) is None


def test_logits_are_clipped_before_the_sigmoid():
    boxes, keypoints = np.array([[0, 0, 1, 1.0]]), np.zeros((1, 4, 2))
    with np.errstate(over="raise"):
        assert B.best_detection(boxes, keypoints, np.array([-1e6]), min_score=1e-50) is not None  # e^100: no overflow


def test_letterbox_pads_the_short_side_and_unpad_undoes_it():
    square, padding = B.letterbox(200, 100)
    assert (square.cx, square.cy, square.width, square.height) == (100, 50, 200, 200)
    assert padding == (0.0, 0.25)
    # the tensor's points at a quarter and three quarters of its height are the image's top and bottom edges
    np.testing.assert_allclose(B.unpad([[0.5, 0.25], [0.5, 0.75], [0, 0.5]], padding) * (200, 100),
                               [[100, 0], [100, 100], [0, 50]])
    tall, padding = B.pad_to_square(B.RotatedRect(10, 20, 50, 200))
    assert (tall.width, tall.height, padding) == (200, 200, (0.375, 0.0))


def test_region_is_centred_on_the_hips_and_turned_so_the_head_is_up():
    upright = B.detection_region(np.array([[100, 100], [100, 60]]))  # keypoint 1 straight above keypoint 0
    assert (upright.cx, upright.cy, upright.width, upright.height) == (100, 100, 100, 100)  # 2 * 40 * 1.25
    assert upright.rotation == pytest.approx(0)
    lying = B.detection_region(np.array([[100, 100], [140, 100]]))  # head to the image's right
    assert lying.rotation == pytest.approx(math.pi / 2)
    upside_down = B.detection_region(np.array([[100, 100], [100, 140]]))
    assert upside_down.rotation == pytest.approx(-math.pi)  # normalised into [-pi, pi)


def test_project_maps_region_coordinates_to_pixels():
    rect = B.RotatedRect(100, 50, 20, 20, 0)
    np.testing.assert_allclose(B.project([[0.5, 0.5], [0, 0], [1, 1]], rect), [[100, 50], [90, 40], [110, 60]])
    turned = B.RotatedRect(100, 50, 20, 20, math.pi / 2)
    # turned a quarter clockwise: the region's right edge is below its centre, its top to the right
    np.testing.assert_allclose(B.project([[1, 0.5], [0.5, 0]], turned), [[100, 60], [110, 50]], atol=1e-9)


@pytest.mark.parametrize("rotation", [0.0, math.pi / 2, -0.4])
def test_cut_and_project_agree_on_where_a_pixel_went(rotation):
    image = np.zeros((100, 120, 3), np.uint8)
    image[29:32, 69:72] = 255  # a bright 3 x 3 spot centred on pixel (70, 30)
    rect = B.RotatedRect(55, 50, 60, 60, rotation)
    out = B.cut(image, rect, 60, border=cv2.BORDER_CONSTANT)[..., 0].astype(float)
    v, u = np.unravel_index(np.argmax(out), out.shape)
    np.testing.assert_allclose(B.project([[u / 60, v / 60]], rect)[0], (70, 30), atol=1.0)


def test_heatmap_refinement_takes_the_weighted_mean_cell():
    heatmap = np.full((8, 8, 1), -10.0)
    heatmap[3, 4, 0] = heatmap[3, 5, 0] = 10.0  # two confident cells side by side
    refined = B.refine_with_heatmap([[4.2 / 8, 3.1 / 8]], heatmap, kernel=3)
    np.testing.assert_allclose(refined[0], (4.5 / 8, 3 / 8), atol=1e-3)  # cell indices, not cell centres
    # a window whose best cell stays under min_confidence leaves the point where the regression put it
    assert B.refine_with_heatmap([[1.2 / 8, 6.5 / 8]], heatmap, kernel=3)[0] == pytest.approx((1.2 / 8, 6.5 / 8))
    # outside the heatmap: kept; just left of 0, C++'s truncation still lands in column 0 (refined)
    assert B.refine_with_heatmap([[1.2, 3.1 / 8]], heatmap)[0] == pytest.approx((1.2, 3.1 / 8))
    heatmap[3, 0, 0] = 10.0
    np.testing.assert_allclose(B.refine_with_heatmap([[-0.05, 3.1 / 8]], heatmap, kernel=3)[0], (0, 3 / 8), atol=1e-3)


@pytest.fixture(scope="module")
def blazepose():
    return B.BlazePose(min_detection_score=0.3)


def test_same_people_and_points_as_mediapipe_0_10_21(blazepose):
    """Every region a build gave BlazePose in tests/data/faces: a person where mediapipe 0.10.21 found one and none
    where it found none; the 7 FDF points within 2 px of its (typically 0.02 px), visibility within 0.02."""
    recorded = json.loads((FACES.parent / "mediapipe_pose.json").read_text())
    fdf7, worst7, worst_visibility = [0, 2, 5, 7, 8, 11, 12], [], []
    images = {}
    for r in recorded["regions"]:
        image = images.setdefault(r["file"], load_rgb(FACES / r["file"]))
        x0, y0, x1, y1 = r["region"]
        pose = blazepose(np.ascontiguousarray(image[y0:y1, x0:x1]))
        assert (pose is None) == (r["points"] is None), r
        if pose is not None:
            worst7.append(np.linalg.norm(pose.points[fdf7] - np.array(r["points"])[fdf7], axis=1).max())
            worst_visibility.append(np.abs(pose.visibility - r["visibility"]).max())
    assert len(worst7) >= 60  # people found in most of the 80 regions
    assert np.median(worst7) < 0.1 and max(worst7) < 2.0, (np.median(worst7), max(worst7))
    assert max(worst_visibility) < 0.02


def test_no_person_in_a_cat(blazepose):
    assert blazepose(load_rgb(FACES / "skimage_chelsea_noface.png")) is None
