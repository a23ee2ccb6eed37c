import numpy as np
import pytest

from fdf_build.geometry import CropTransform, Fitted, box_iou, crop, square_around

from .conftest import DEMO_DATA, load_rgb


def test_square_around_hand_worked():
    # a 100 x 80 box centred on (150, 140); side = 100 * 2 = 200, top-left = (50, 40)
    t = square_around(np.array([100, 100, 200, 180]), expand=2.0, out_size=256)
    assert (t.x0, t.y0, t.side) == (50, 40, 200)
    np.testing.assert_allclose(t.forward([[50, 40], [250, 240], [150, 140]]), [[0, 0], [256, 256], [128, 128]])
    np.testing.assert_allclose(t.forward_box([100, 100, 200, 180]), [64, 76.8, 192, 179.2], rtol=1e-6)


def test_forward_inverse_round_trip_and_nan():
    t = CropTransform(x0=-37, y0=12, side=333, out_size=256)
    pts = np.array([[0.5, 3.25], [400.0, -20.0], [np.nan, np.nan]])
    back = t.inverse(t.forward(pts))
    np.testing.assert_allclose(back[:2], pts[:2], rtol=1e-5)
    assert np.isnan(back[2]).all()


def test_crop_without_resampling_is_an_exact_copy():
    image = np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    t = CropTransform(x0=120, y0=30, side=64, out_size=64)
    np.testing.assert_array_equal(crop(image, t), image[30:94, 120:184])


def test_crop_pads_with_zeros_outside_the_photo():
    image = np.full((100, 100, 3), 200, dtype=np.uint8)
    t = CropTransform(x0=-50, y0=60, side=100, out_size=100)  # left half and bottom 60% outside
    out = crop(image, t)
    assert (out[:40, 50:] == 200).all()
    assert (out[:, :50] == 0).all() and (out[40:, :] == 0).all()


def test_crop_entirely_outside_is_black():
    out = crop(np.full((10, 10, 3), 9, np.uint8), CropTransform(x0=50, y0=50, side=20, out_size=8))
    assert out.shape == (8, 8, 3) and not out.any()


@pytest.mark.parametrize("side", [64, 1000])
def test_crop_resamples_to_out_size_and_keeps_a_feature_at_its_mapped_place(side):
    image = np.zeros((1200, 1200, 3), dtype=np.uint8)
    t = CropTransform(x0=100, y0=100, side=side, out_size=256)
    # a bright square whose centre is at a known photo point
    cx, cy = 100 + side * 0.75, 100 + side * 0.25
    r = max(2, side // 16)
    image[int(cy) - r : int(cy) + r, int(cx) - r : int(cx) + r] = 255
    out = crop(image, t)
    assert out.shape == (256, 256, 3)
    ys, xs = np.nonzero(out[..., 0] > 128)
    expected = t.forward([[cx, cy]])[0]
    assert abs(xs.mean() + 0.5 - expected[0]) < 2 and abs(ys.mean() + 0.5 - expected[1]) < 2


def test_real_photo_face_lands_centred_with_expand_two():
    image = load_rgb(DEMO_DATA / "skimage_astronaut.jpg")
    box = np.array([181.7, 60.9, 268.4, 175.9])  # hand-annotated face in the 512 x 512 photo
    t = square_around(box, expand=2.0, out_size=256)
    out = crop(image, t)
    b = t.forward_box(box)
    assert abs((b[0] + b[2]) / 2 - 128) <= 1 and abs((b[1] + b[3]) / 2 - 128) <= 1
    assert max(b[2] - b[0], b[3] - b[1]) == pytest.approx(128, abs=1.5)
    assert out[100:156, 100:156].mean() > 60  # the face, not padding
    # with a wider crop the square reaches above the photo's top edge: those rows are black
    wide = square_around(box, expand=3.0, out_size=256)
    out = crop(image, wide)
    assert wide.y0 == -54 and not out[: int(54 * wide.scale) - 1].any()
    assert out[int(54 * wide.scale) + 2 :].mean() > 30


def test_box_iou_hand_worked():
    assert box_iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert box_iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert box_iou([0, 0, 10, 10], [2, 3, 6, 8]) == pytest.approx(20 / 100)  # one inside the other
    assert box_iou([0, 0, 10, 10], [5, 5, 15, 20]) == pytest.approx(25 / (100 + 150 - 25))
    assert box_iou([0, 0, 10, 10], [10, 0, 20, 10]) == 0.0  # touching
    assert box_iou([0, 0, 10, 10], [12, 12, 20, 20]) == 0.0  # apart in x and y
    assert box_iou([0, 0, 10, 10], [0, 12, 10, 20]) == 0.0  # apart in y only
    assert box_iou([0, 0, 0, 0], [0, 0, 0, 0]) == 0.0  # empty boxes: no union
    assert isinstance(box_iou(np.array([0, 0, 10, 10]), np.array([5, 0, 15, 10])), float)


def test_fitted_shrinks_the_long_side_and_maps_points_back():
    image = np.zeros((300, 600, 3), np.uint8)
    image[:, 300:] = 200
    fitted = Fitted.of(image, 150)
    assert fitted.image.shape == (75, 150, 3) and fitted.image.flags.c_contiguous
    np.testing.assert_allclose(fitted.scale, [0.25, 0.25])
    assert fitted.image[:, :74].max() == 0 and fitted.image[:, 76:].min() == 200  # area-averaged, not shifted
    np.testing.assert_allclose(fitted.to_original(np.array([[150.0, 75.0], [10.0, 5.0]])), [[600, 300], [40, 20]])
    same = Fitted.of(image, 600)  # never enlarged, never copied at another size
    assert same.image.shape == image.shape and np.array_equal(same.image, image)
    np.testing.assert_array_equal(same.scale, [1, 1])
    assert same.scale.dtype == np.float32
    thin = Fitted.of(np.zeros((1, 1000, 3), np.uint8), 100)  # a side never rounds to 0
    assert thin.image.shape == (1, 100, 3)
    np.testing.assert_allclose(thin.scale, [0.1, 1.0])
    tall = Fitted.of(np.zeros((400, 200, 3), np.uint8), 100)
    assert tall.image.shape == (100, 50, 3)


def test_crop_pads_above_and_left_with_zeros():
    image = np.full((50, 60, 3), 7, np.uint8)
    out = crop(image, CropTransform(x0=-5, y0=-3, side=20, out_size=20))
    assert out.dtype == np.uint8 and (out[:3] == 0).all() and (out[:, :5] == 0).all() and (out[3:, 5:] == 7).all()
    assert (crop(image, CropTransform(x0=100, y0=0, side=10, out_size=10)) == 0).all()  # wholly outside
    assert (crop(image, CropTransform(x0=0, y0=100, side=10, out_size=10)) == 0).all()


def test_crop_shrinks_by_area_and_enlarges_bicubically():
    checker = (np.indices((64, 64)).sum(0) % 2 * 255).astype(np.uint8)[..., None].repeat(3, 2)
    small = crop(checker, CropTransform(0, 0, 64, 32))
    assert np.abs(small.astype(int) - 127.5).max() <= 1  # area: each output pixel averages 2 x 2 inputs
    step = np.zeros((4, 4, 3), np.uint8)
    step[:, 2:] = 255
    big = crop(step, CropTransform(0, 0, 4, 16))
    assert big.min() == 0 and big.max() == 255 and len(np.unique(big)) > 4  # cubic: smooth ramp, not nearest
    assert (big[:, 7].astype(int) < big[:, 8].astype(int)).all()

# ---------------------------------------------------------------- FDF256's crop (DeepPrivacy2's arithmetic)

from fdf_build.geometry import (GEOMETRY_FILE, CropGeometry, expand_square, recompute_crop, resize_bicubic_aa,
                                whole_pixels)


@pytest.mark.parametrize("box, square", [
    # centre int(x0) + w // 2; half = max(w, h) * 1.4 // 2 to each side
    ((100, 100, 200, 180), (80, 70, 220, 210)),      # even sides: centre (150, 140), 140 // 2 = 70
    ((10, 20, 111, 121), (-10, 0, 130, 140)),        # odd 101: 141.4 // 2 = 70, centre 10 + 50; leaves the left edge
    ((0, 0, 102, 102), (-20, -20, 122, 122)),        # 142.8 // 2 = 71, side 142
    ((50, 40, 114, 140), (12, 20, 152, 160)),        # tall: the height decides, centre (82, 90)
    ((0, 0, 3, 3), (-1, -1, 3, 3)),                  # tiny: 4.2 // 2 = 2, centre 0 + 1
    ((5, 5, 6, 6), (4, 4, 6, 6)),                    # 1 px: DP2's half would be 0; we keep a 2 px square
    ((0, 0, 1000, 800), (-200, -300, 1200, 1100)),   # huge: the whole photo and more
])
def test_expand_square_is_fdf256s_simple_expand(box, square):
    assert expand_square(np.array(box), 1.4) == square


def test_boxes_are_rounded_half_to_even_as_dp2_rounds_dsfds():
    np.testing.assert_array_equal(whole_pixels([100.4, 99.6, 199.5, 180.5]), [100, 100, 200, 180])
    assert whole_pixels([100.4, 99.6, 199.5, 180.5]).dtype == np.int64  # box indices, never floats
    t = CropGeometry().transform(np.array([100.4, 99.6, 199.5, 180.5]))
    assert CropGeometry().crop_box(t, [100.4, 99.6, 199.5, 180.5]).dtype == np.int64  # bounding_box.npy's dtype


def test_crop_box_and_keypoints_in_the_crop_frame_as_get_crop():
    g = CropGeometry()
    t = g.transform(np.array([100.4, 99.6, 199.5, 180.5]))
    assert (t.x0, t.y0, t.side, t.out_size) == (80, 70, 140, 256)
    # (100 - 80, 100 - 70, 200 - 80, 180 - 70) * 256 / 140 = (36.57, 54.86, 219.43, 201.14), truncated
    np.testing.assert_array_equal(g.crop_box(t, [100.4, 99.6, 199.5, 180.5]), [36, 54, 219, 201])
    points = np.array([[60, 250], [150, 140], [np.nan, np.nan]])  # below-left of the crop, its centre, missing
    np.testing.assert_array_equal(g.landmarks(t, points), [[0, 1], [0.5, 0.5], [np.nan, np.nan]])
    nan = CropGeometry(keypoints_outside="nan").landmarks(t, points)
    np.testing.assert_array_equal(nan, [[np.nan, np.nan], [0.5, 0.5], [np.nan, np.nan]])


@pytest.mark.parametrize("border", ["left", "top", "right", "bottom"])
def test_a_face_at_each_border_is_zero_padded_there(border):
    h, w = 200, 300
    image = np.full((h, w, 3), 200, dtype=np.uint8)
    box = {"left": (0, 70, 60, 130), "top": (120, 0, 180, 60), "right": (240, 70, 300, 130),
           "bottom": (120, 140, 180, 200)}[border]
    out, t = recompute_crop(image, np.array(box))
    assert t.side == 84 and out.shape == (256, 256, 3)  # 60 * 1.4 = 84: 12 px beyond the border
    band = int(12 * 256 / 84)  # 36 crop columns/rows of padding
    view = {"left": out, "right": out[:, ::-1], "top": out.swapaxes(0, 1), "bottom": out[::-1].swapaxes(0, 1)}[border]
    assert not view[:, : band - 2].any()
    assert (view[:, band + 7 :] == 200).all()  # bicubic rings for 2 photo px (6 crop px) past the edge


def test_upsampling_is_torchs_antialiased_bicubic_and_shrinking_cv2s_area():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (900, 900, 3), dtype=np.uint8)
    small = CropGeometry().transform(np.array([400, 400, 480, 480]))  # side 112 < 256: enlarged
    np.testing.assert_array_equal(crop(image, small), resize_bicubic_aa(image[384:496, 384:496], 256))
    large = CropGeometry().transform(np.array([300, 300, 600, 600]))  # side 420, inside the photo: INTER_AREA
    import cv2
    np.testing.assert_array_equal(crop(image, large), cv2.resize(image[240:660, 240:660], (256, 256),
                                                                 interpolation=cv2.INTER_AREA))
    # DP2 decides on the part inside the photo: a 420 px square with 150 x 420 < 256 * 256 inside goes bicubic
    edge = CropGeometry().transform(np.array([-210, 300, 90, 600]))
    assert (edge.x0, edge.side) == (-270, 420)
    padded = np.zeros((420, 420, 3), np.uint8)
    padded[:, 270:] = image[240:660, 0:150]
    np.testing.assert_array_equal(crop(image, edge), resize_bicubic_aa(padded, 256))


@pytest.mark.parametrize("side", [37, 140, 255, 420])
def test_resize_bicubic_aa_equals_torchvision_within_one_grey_level(side):
    torch = pytest.importorskip("torch")
    from torchvision.transforms.functional import InterpolationMode, resize

    image = np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8)
    x = torch.from_numpy(image).permute(2, 0, 1).float()
    expected = resize(x, [256, 256], interpolation=InterpolationMode.BICUBIC, antialias=True)
    expected = expected.round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
    diff = np.abs(resize_bicubic_aa(image, 256).astype(int) - expected)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_real_photo_face_crop_is_fdf256s_and_recomputable(tmp_path):
    image = load_rgb(DEMO_DATA / "skimage_astronaut.jpg")
    box = np.array([181.7, 60.9, 268.4, 175.9])  # hand-annotated face in the 512 x 512 photo
    g = CropGeometry()
    out, t = recompute_crop(image, box, g)
    # whole pixels (182, 61, 268, 176): 86 x 115, centre (182 + 43, 61 + 57), half 115 * 1.4 // 2 = 80
    assert (t.x0, t.y0, t.side) == (145, 38, 160)
    np.testing.assert_array_equal(out, resize_bicubic_aa(image[38:198, 145:305], 256))
    b = g.crop_box(t, box)  # (37 * 1.6, 23 * 1.6, 123 * 1.6, 138 * 1.6) truncated
    np.testing.assert_array_equal(b, [59, 36, 196, 220])
    (tmp_path / GEOMETRY_FILE).write_text('{"expand": 2.0, "size": 128, "keypoints_outside": "nan"}')
    assert CropGeometry.of_dataset(tmp_path) == CropGeometry(2.0, 128, "nan")
    assert CropGeometry.of_dataset(tmp_path / "published") == CropGeometry()  # no file: FDF256's


def test_crop_geometry_file_round_trips_and_older_files_clamp():
    import json

    for g in (CropGeometry(), CropGeometry(2.0, 128, "nan")):
        record = json.loads(json.dumps(g.to_json()))
        assert CropGeometry.from_json(record) == g
        assert (record["expand"], record["size"], record["padding"]) == (g.expand, g.size, 0)
    # files written before keypoints_outside existed: their landmarks were clamped, as DP2's get_crop clamps
    assert CropGeometry.from_json({"expand": "1.4", "size": "256"}) == CropGeometry(1.4, 256, "clamp")


def test_box_iou_of_boxes_with_four_different_sides():
    # a: 10 x 4 at (2, 5); b: 4 x 6 at (4, 1); they share x 4..8 and y 5..7, 8 px of 40 + 24 - 8
    assert box_iou([2, 5, 12, 9], [4, 1, 8, 7]) == pytest.approx(8 / 56)
    assert box_iou([4, 1, 8, 7], [2, 5, 12, 9]) == pytest.approx(8 / 56)
    assert box_iou([0, 0, 0.5, 0.5], [0, 0, 0.5, 0.5]) == 1.0  # a union under one pixel is still a union


def test_keypoints_on_the_crop_border_stay_and_a_point_half_outside_goes_whole():
    t = CropGeometry().transform(np.array([100.4, 99.6, 199.5, 180.5]))  # x0 80, y0 70, side 140
    points = np.array([[80, 70], [220, 210], [150, 280], [79, 140]])  # both corners; y out; x out by one pixel
    clamped = CropGeometry().landmarks(t, points)
    assert clamped.dtype == np.float32
    np.testing.assert_allclose(clamped, [[0, 0], [1, 1], [0.5, 1], [0, 0.5]])
    nan = CropGeometry(keypoints_outside="nan").landmarks(t, points)
    assert nan.dtype == np.float32
    np.testing.assert_array_equal(nan, [[0, 0], [1, 1], [np.nan, np.nan], [np.nan, np.nan]])


def test_crop_geometry_refuses_a_crop_smaller_than_the_face():
    assert CropGeometry(expand=1.0).expand == 1.0  # the box itself, squared: allowed
    with pytest.raises(ValueError, match=r"expand must be >= 1 \(the crop must hold the whole face box\)"):
        CropGeometry(expand=0.99)
    with pytest.raises(ValueError, match=r"keypoints_outside must be one of \('clamp', 'nan'\)"):
        CropGeometry(keypoints_outside="drop")


def test_fitted_shrinks_by_area_so_fine_detail_averages_instead_of_aliasing():
    # a one-pixel checkerboard shrunk 3x: each output pixel averages a 3 x 3 block (4 or 5 of 9 white);
    # sampling instead (INTER_LINEAR lands on pixel centres at 1/3) would give pure black and white
    checker = ((np.indices((300, 300)).sum(axis=0) % 2) * 255).astype(np.uint8)
    shrunk = Fitted.of(np.dstack([checker] * 3), 100).image
    assert shrunk.shape == (100, 100, 3)
    assert set(np.unique(shrunk)) <= {113, 142}  # 255 * 4 / 9 and 255 * 5 / 9, rounded
    assert Fitted.of(np.zeros((100, 100, 3), np.uint8), 100).image.shape == (100, 100, 3)  # max side: kept as is
