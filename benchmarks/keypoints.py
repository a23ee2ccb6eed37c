"""Keypoint yield and time per photo, old default vs new, on the annotated test photos (tests/data/faces).

For every annotated face whose box is at least --min-face px on both sides: is it detected (RetinaFace, the
default detector, a box with IoU >= 0.4), matched to a person (FDF256's rule: nose and both eyes inside the face
box), and so kept under ``--unmatched drop`` with all 7 keypoints from a real model? Time per photo is the
detector plus the keypoint stage, the median over --repeat runs of all photos, both configurations in this
process, so the ratio is the figure to read.

* old: BlazePose on a head-and-shoulders region, points under visibility 0.5 blanked (the default before the
  FDF256-fidelity work: such a face had NaN keypoints);
* new: ``mediapipe+movenet``, BlazePose first and MoveNet MultiPose on a wider region for its misses, every
  point kept with its score.

    python benchmarks/keypoints.py [--faces tests/data/faces] [--min-face 64] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from fdf_build.geometry import box_iou
from fdf_build.models.faces import RetinaFaceDetector
from fdf_build.models.pose import BlazePoseFull, MoveNetMultiPose, PoseCascade
from fdf_build.sources.filters import face_large_enough

OLD_VISIBILITY = 0.5


def all_seven(face, *, old: bool) -> bool:
    """All 7 keypoints from a pose model (the old default blanked points under visibility 0.5)."""
    if face.keypoint_scores is None:
        return False
    if old:
        return bool((face.keypoint_scores >= OLD_VISIBILITY).all())
    return bool(np.isfinite(face.keypoints).all())


def measure(configs, images, *, min_face: int, repeat: int) -> dict:
    """Per configuration: (faces kept with 7 keypoints, annotated faces, median ms per photo).

    The detector runs once per photo per round and every configuration's keypoint stage right after it,
    interleaved, so a busy machine slows them alike and the ratio holds.
    """
    detector = RetinaFaceDetector()
    rounds = {name: [] for name, _, _ in configs}
    kept = {name: 0 for name, _, _ in configs}
    total = sum(len(truth) for _, truth in images)
    for r in range(repeat):
        spent = {name: 0.0 for name, _, _ in configs}
        for rgb, annotated in images:
            start = time.perf_counter()
            faces = [f for f in detector(rgb) if face_large_enough(f, min_face)]
            detect = time.perf_counter() - start
            for name, stage, old in configs:
                start = time.perf_counter()
                result = stage(rgb, faces) if faces else faces
                spent[name] += detect + time.perf_counter() - start
                if r == 0:
                    for truth in annotated:
                        best = max(result, key=lambda f: box_iou(truth, f.box), default=None)
                        kept[name] += best is not None and box_iou(truth, best.box) >= 0.4 and all_seven(best, old=old)
        for name in spent:
            rounds[name].append(spent[name] / len(images) * 1000)
    return {name: (kept[name], total, statistics.median(rounds[name])) for name in rounds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", default=str(Path(__file__).resolve().parents[1] / "tests/data/faces"))
    parser.add_argument("--min-face", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    folder = Path(args.faces)
    images = []
    for a in json.loads((folder / "annotations.json").read_text())["images"]:
        truth = [f["box"] for f in a["faces"] if not f.get("ignore")
                 and min(f["box"][2] - f["box"][0], f["box"][3] - f["box"][1]) >= args.min_face]
        images.append((cv2.cvtColor(cv2.imread(str(folder / a["file"])), cv2.COLOR_BGR2RGB), truth))
    print(f"{len(images)} photos, {sum(len(t) for _, t in images)} annotated faces >= {args.min_face} px")
    blaze, movenet = BlazePoseFull(), MoveNetMultiPose()
    old, new = "old: BlazePose, visibility >= 0.5", "new: BlazePose, then MoveNet for its misses"
    configs = [
        (old, blaze, True),
        ("BlazePose, every point with its score", blaze, False),
        ("MoveNet per-face region alone", movenet, False),
        (new, PoseCascade([blaze, movenet]), False),
    ]
    results = measure(configs, images, min_face=args.min_face, repeat=args.repeat)
    for name, (kept, total, ms) in results.items():
        print(f"{name:44s} kept with 7 keypoints {kept:3d}/{total} = {kept / total:6.1%}   {ms:6.1f} ms/photo")
    print(f"new / old time per photo: {results[new][2] / results[old][2]:.2f}x; "
          f"yield {results[old][0] / results[old][1]:.1%} -> {results[new][0] / results[new][1]:.1%}")


if __name__ == "__main__":
    main()
