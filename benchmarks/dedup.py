"""Near-duplicate threshold: recall on copies made with known transforms, false matches between distinct faces.

Each real photo of tests/data/faces (crowds of look-alike faces in uniforms among them) and tests/data/attributes
is copied with known transforms (re-encoded, resized, lightly cropped, recoloured); the build's own detector and
crop cut the faces of the original and of each copy, and each face of a copy is paired with the original face
it covers (IoU >= 0.5 once its box is mapped back). A face counts where the build keeps it: >= 64 px in both.

Printed, per threshold (bits of imagehash's 64-bit pHash of the crop):
  * recall: copies' faces within the threshold of their original, overall and per transform,
  * false matches: pairs of distinct faces within it, among the faces a build keeps (>= 64 px), among those of
    one photo (crowds), and among every face >= 32 px (small crowd faces upsampled: harder than a build sees),
then a second rule tried and left out (the photos' own pHash near, then a looser threshold on the faces), and
the speed of grouping (fdf_build.dedup.groups) against a plain-Python pairwise loop, in the same process,
extrapolated to FDF256's 250k faces and to 1M.

    python benchmarks/dedup.py [--thresholds 4,6,8,10,12,14,16,20] [--pairs-n 20000]
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import cv2
import numpy as np

from fdf_build import dedup
from fdf_build.crop import cut_face
from fdf_build.geometry import CropGeometry
from fdf_build.models.faces import RetinaFaceDetector
from fdf_build.sources.synthetic import synthetic_photo

REPO = Path(__file__).resolve().parents[1]
PHOTOS = sorted(p for folder in ("faces", "attributes") for p in (REPO / "tests" / "data" / folder).iterdir()
                if p.suffix in (".jpg", ".png"))
MIN_FACE = 64


def jpeg(rgb, quality):
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def reencode(quality):
    return lambda rgb: (jpeg(rgb, quality), (1.0, 0, 0))


def resize(scale):
    def f(rgb):
        h, w = rgb.shape[:2]
        size = (round(w * scale), round(h * scale))
        return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC), (scale, 0, 0)
    return f


def crop(left, top, right, bottom):
    def f(rgb):
        h, w = rgb.shape[:2]
        x0, y0 = round(w * left), round(h * top)
        return rgb[y0:h - round(h * bottom), x0:w - round(w * right)].copy(), (1.0, x0, y0)
    return f


def recolour(hue=0, saturation=1.0, gain=1.0, bias=0.0, grey=False):
    def f(rgb):
        hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV).astype(np.float32)
        hsv[..., 0] = (hsv[..., 0] + hue / 2) % 180  # OpenCV's hue is degrees / 2
        hsv[..., 1] = np.clip(hsv[..., 1] * saturation, 0, 255)
        out = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32) * gain + bias
        out = np.clip(out, 0, 255).astype(np.uint8)
        if grey:
            out = np.repeat(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
        return out, (1.0, 0, 0)
    return f


#: name -> (kind, transform returning the copy and how its pixels map back: scale, x offset, y offset)
TRANSFORMS = {
    "re-encode JPEG q75": ("re-encode", reencode(75)),
    "re-encode JPEG q50": ("re-encode", reencode(50)),
    "re-encode JPEG q30": ("re-encode", reencode(30)),
    "resize x0.5": ("resize", resize(0.5)),
    "resize x0.75": ("resize", resize(0.75)),
    "resize x1.5": ("resize", resize(1.5)),
    "crop 3% each side": ("crop", crop(0.03, 0.03, 0.03, 0.03)),
    "crop 5% each side": ("crop", crop(0.05, 0.05, 0.05, 0.05)),
    "crop 10% left and top": ("crop", crop(0.10, 0.10, 0, 0)),
    "brighter, more contrast": ("recolour", recolour(gain=1.2, bias=15)),
    "darker": ("recolour", recolour(gain=0.75)),
    "greyscale": ("recolour", recolour(grey=True)),
    "saturation x0.4": ("recolour", recolour(saturation=0.4)),
    "hue +30 degrees": ("recolour", recolour(hue=30)),
    "sepia-like": ("recolour", recolour(hue=20, saturation=0.3, gain=1.05, bias=5)),
}


def faces_of(detector, rgb, min_side=32):
    """(box, smaller side, crop hash as uint64) of each face >= ``min_side`` px, cut as the build cuts it."""
    photo, out = synthetic_photo(0), []
    for i, face in enumerate(detector(rgb)):
        side = float(min(face.box[2] - face.box[0], face.box[3] - face.box[1]))
        if side >= min_side:
            crop_ = cut_face(photo, rgb, face, i, CropGeometry(), "")
            out.append((face.box.astype(np.float64), side, dedup.to_uint64([dedup.phash(crop_.image)])[0]))
    return out


def iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def distance(a, b) -> int:
    return bin(int(a) ^ int(b)).count("1")


def photo_hash(rgb) -> int:
    return int(dedup.to_uint64([dedup.phash(rgb)])[0])


def measure(detector):
    originals = {p.name: (rgb, faces_of(detector, rgb)) for p in PHOTOS
                 if (rgb := cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)) is not None}
    true = []  # (transform, distance, distance of the photos, distances to the original's other faces)
    for name, (rgb, faces) in originals.items():
        for transform, (_, f) in TRANSFORMS.items():
            copy, (scale, dx, dy) = f(rgb)
            photos = distance(photo_hash(copy), photo_hash(rgb))
            for box, side, h in faces_of(detector, copy, MIN_FACE):
                back = (box + [dx, dy, dx, dy]) / scale
                overlap, k = max(((iou(back, b), k) for k, (b, _, _) in enumerate(faces)), default=(0, None))
                if overlap >= 0.5 and faces[k][1] >= MIN_FACE:
                    others = [distance(h, o[2]) for j, o in enumerate(faces) if j != k and o[1] >= MIN_FACE]
                    true.append((transform, distance(h, faces[k][2]), photos, others))
    everyone = [(name, side, h) for name, (_, faces) in originals.items() for _, side, h in faces]
    distinct = [(distance(a[2], b[2]), a[0] == b[0], min(a[1], b[1]) >= MIN_FACE)
                for a, b in itertools.combinations(everyone, 2)]
    return true, distinct, everyone


def grouping_speed(n: int) -> tuple[float, float]:
    """Seconds per pair: fdf_build.dedup.near_pairs on ``n`` random hashes, and a plain-Python loop on a sample."""
    rng = np.random.default_rng(0)
    hashes = rng.integers(1, 2**63, n, dtype=np.int64).astype(np.uint64)
    start = time.perf_counter()
    list(dedup.near_pairs(hashes))
    ours = (time.perf_counter() - start) / (n * (n - 1) / 2)
    sample = [int(h) for h in hashes[:1500]]
    start = time.perf_counter()
    sum(bin(a ^ b).count("1") <= dedup.THRESHOLD for a, b in itertools.combinations(sample, 2))
    loop = (time.perf_counter() - start) / (len(sample) * (len(sample) - 1) / 2)
    return ours, loop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--thresholds", default="4,6,8,10,12,14,16,18,20")
    parser.add_argument("--pairs-n", type=int, default=20_000, help="random hashes for the grouping speed")
    args = parser.parse_args()
    true, distinct, everyone = measure(RetinaFaceDetector())
    kept = [d for d, _, large in distinct if large]
    crowd = [d for d, same, large in distinct if same and large]
    print(f"{len(PHOTOS)} photos; {sum(s >= MIN_FACE for _, s, _ in everyone)} faces >= {MIN_FACE} px "
          f"({len(everyone)} >= 32 px); {len(true)} copy/original pairs; distinct pairs: {len(kept)} >= {MIN_FACE} px "
          f"({len(crowd)} within one photo), {len(distinct)} >= 32 px")
    print(f"nearest distinct faces: {min(kept)} bits (>= {MIN_FACE} px), {min(crowd)} (same photo), "
          f"{min(d for d, _, _ in distinct)} (>= 32 px), {min(d for d, same, _ in distinct if same)} (>= 32 px, "
          "same photo)")
    print(f"\n{'bits':>4}  {'recall':>7}  " + "  ".join(f"{k:>9}" for k in ("re-encode", "resize", "crop", "recolour"))
          + f"  {'false >=64':>12}  {'same photo':>10}  {'false >=32':>12}")
    for t in map(int, args.thresholds.split(",")):
        by_kind = {}
        for transform, d, *_ in true:
            by_kind.setdefault(TRANSFORMS[transform][0], []).append(d <= t)
        marker = "  <- dedup.THRESHOLD" if t == dedup.THRESHOLD else ""
        print(f"{t:>4}  {np.mean([d <= t for _, d, *_ in true]):>7.1%}  "
              + "  ".join(f"{np.mean(by_kind[k]):>9.1%}" for k in ("re-encode", "resize", "crop", "recolour"))
              + f"  {sum(d <= t for d in kept):>5}/{len(kept):<6}  {sum(d <= t for d in crowd):>4}/{len(crowd):<5}"
              + f"  {sum(d <= t for d, _, _ in distinct):>5}/{len(distinct):<6}{marker}")
    print("\nworst copy per transform (bits): " + ", ".join(
        f"{name} {max(d for t, d, *_ in true if t == name)}" for name in TRANSFORMS if any(t == name for t, *_ in true)))
    # a second rule tried: the photos near-identical (their own pHash), then a looser threshold on the faces
    pairs = sum(len(others) for *_, others in true)
    for photo_bits, loose in ((10, 16), (10, 20)):
        def match(d, photos):
            return d <= dedup.THRESHOLD or (photos <= photo_bits and d <= loose)
        found = np.mean([match(d, photos) for _, d, photos, _ in true])
        false = sum(match(o, photos) for _, _, photos, others in true for o in others)
        print(f"photo within {photo_bits} bits, then faces within {loose}: recall {found:.1%}, false matches "
              f"{false}/{pairs} (a copy's face against the original photo's other faces)")
    ours, loop = grouping_speed(args.pairs_n)
    print(f"\ngrouping: {ours * 1e9:.2f} ns/pair ({args.pairs_n:,} hashes), plain-Python loop {loop * 1e9:.0f} ns/pair "
          f"({loop / ours:.0f}x slower); extrapolated: 250k faces {ours * 250e3 ** 2 / 2:.0f} s, "
          f"1M {ours * 1e12 / 2 / 60:.0f} min")


if __name__ == "__main__":
    main()
