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

from fdf_build.detect import RetinaFaceDetector
from fdf_build.filters import face_large_enough
from fdf_build.geometry import box_iou
from fdf_build.keypoints import MediaPipePose, MoveNetMultiPose, PoseCascade

OLD_VISIBILITY = 0.5


def all_seven(face, *, old: bool) -> bool:
    """All 7 keypoints from a pose model (the old default blanked points under visibility 0.5)."""
    if face.keypoint_scores is None:
        return False
    if old:
        return bool((face.keypoint_scores >= OLD_VISIBILITY).all())
    return bool(np.isfinite(face.keypoints).all())


def run(name, stage, images, *, min_face: int, repeat: int, old: bool = False) -> tuple[int, int, float]:
    detector = RetinaFaceDetector()
    per_photo, kept, total = [], 0, 0
    for r in range(repeat):
        times = []
        for rgb, annotated in images:
            start = time.perf_counter()
            faces = [f for f in detector(rgb) if face_large_enough(f, min_face)]
            faces = stage(rgb, faces) if faces else faces
            times.append(time.perf_counter() - start)
            if r:
                continue
            for truth in annotated:
                total += 1
                best = max(faces, key=lambda f: box_iou(truth, f.box), default=None)
                kept += best is not None and box_iou(truth, best.box) >= 0.4 and all_seven(best, old=old)
        per_photo.append(statistics.mean(times))
    ms = statistics.median(per_photo) * 1000
    print(f"{name:44s} kept with 7 keypoints {kept:3d}/{total} = {kept / total:5.1%}   {ms:6.1f} ms/photo")
    return kept, total, ms


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
    blaze, movenet = MediaPipePose(), MoveNetMultiPose()
    _, _, old_ms = run("old: BlazePose, visibility >= 0.5", blaze, images, min_face=args.min_face,
                       repeat=args.repeat, old=True)
    run("BlazePose, every point with its score", blaze, images, min_face=args.min_face, repeat=args.repeat)
    run("MoveNet per-face region alone", movenet, images, min_face=args.min_face, repeat=args.repeat)
    kept, total, new_ms = run("new: BlazePose, then MoveNet for its misses", PoseCascade([blaze, movenet]), images,
                              min_face=args.min_face, repeat=args.repeat)
    print(f"new / old time per photo: {new_ms / old_ms:.2f}x; new yield {kept / total:.1%}")


if __name__ == "__main__":
    main()
