import numpy as np
import pytest

from fdf_build.geometry import CropTransform, crop, square_around

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
