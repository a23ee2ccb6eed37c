"""Near-duplicates: the hash is imagehash's pHash, distances are exact bit counts, groups follow the threshold."""

import itertools

import cv2
import imagehash
import numpy as np
from PIL import Image

from fdf_build import dedup

from .conftest import DEMO_DATA, REPO, load_rgb

ATTRIBUTE_FACES = REPO / "tests" / "data" / "attributes"


def flipped(value: int, bits) -> int:
    for b in bits:
        value ^= 1 << b
    return value


def test_phash_is_imagehash_phash_in_its_own_text_form():
    rgb = load_rgb(DEMO_DATA / "codait_luciano.jpg")
    text = dedup.phash(rgb)
    assert len(text) == 16
    assert imagehash.hex_to_hash(text) == imagehash.phash(Image.fromarray(rgb))
    # uint64 keeps imagehash's bit order: its first bit is the most significant
    bits = imagehash.phash(Image.fromarray(rgb)).hash.flatten()
    assert dedup.to_uint64([text])[0] == int("".join("1" if b else "0" for b in bits), 2)
    assert dedup.to_uint64(["", None]).tolist() == [0, 0]


def test_hamming_counts_differing_bits():
    a = np.array([0b1011, 0, (1 << 64) - 1, 1 << 63], dtype=np.uint64)
    b = np.array([0b0001, (1 << 64) - 1, (1 << 64) - 1, 1], dtype=np.uint64)
    assert dedup.hamming(a, b).tolist() == [2, 64, 0, 2]
    assert dedup.hamming(a[:, None], b[None, :]).shape == (4, 4)


def test_a_reencoded_face_is_near_and_distinct_faces_are_far():
    faces = [load_rgb(p) for p in sorted(ATTRIBUTE_FACES.glob("daps_*.png"))[:6]]
    for face in faces:
        ok, jpeg = cv2.imencode(".jpg", face, [cv2.IMWRITE_JPEG_QUALITY, 50])
        copy = cv2.resize(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), None, fx=0.75, fy=0.75, interpolation=cv2.INTER_AREA)
        near = dedup.to_uint64([dedup.phash(face), dedup.phash(copy)])
        assert dedup.hamming(near[0], near[1]) <= dedup.THRESHOLD
    hashes = dedup.to_uint64([dedup.phash(f) for f in faces])
    assert dedup.groups(hashes) == []


def test_groups_follow_the_threshold_and_chain():
    base = 0x0123456789ABCDEF
    a, b = base, flipped(base, range(dedup.THRESHOLD))  # exactly THRESHOLD bits apart: one face
    c = flipped(b, range(20, 20 + dedup.THRESHOLD))  # near b, 2 x THRESHOLD from a: joined through b
    d = flipped(base, range(40, 41 + dedup.THRESHOLD))  # THRESHOLD + 1 from a, farther from b and c: alone
    hashes = np.array([d, a, 0, b, c, a], dtype=np.uint64)  # 0: a face without a hash pairs with nothing
    assert dedup.groups(hashes) == [[1, 3, 4, 5]]
    assert dedup.groups(hashes, threshold=dedup.THRESHOLD - 1) == [[1, 5]]
    assert dedup.groups(np.zeros(3, dtype=np.uint64)) == []


def test_near_pairs_equal_a_plain_pairwise_check_across_blocks():
    rng = np.random.default_rng(7)
    hashes = rng.integers(1, 2**63, 2100, dtype=np.int64).astype(np.uint64)  # 2 blocks of rows: 1997 and 103
    planted = [(5, 2099), (1000, 1001), (1996, 1997), (0, 2000)]
    for i, j in planted:
        hashes[j] = flipped(int(hashes[i]), range(0, 2 * (j % 5) + 1))
    expected = {(i, j) for i, j in itertools.combinations(range(len(hashes)), 2)
                if (int(hashes[i]) ^ int(hashes[j])).bit_count() <= dedup.THRESHOLD}
    assert set(planted) <= expected
    assert set(dedup.near_pairs(hashes)) == expected


def test_left_out_keeps_the_first_face_of_each_group_by_the_order():
    order = {0: ("2010-01-02", 7), 1: ("2009-05-01", 9), 2: ("2009-05-01", 3), 3: ("2001-01-01", 1), 4: ("~", 0)}
    assert dedup.left_out([[0, 1, 2], [3, 4]], order.__getitem__) == {0, 1, 4}
