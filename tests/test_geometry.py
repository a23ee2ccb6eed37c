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
