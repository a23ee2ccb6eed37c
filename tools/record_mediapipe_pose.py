"""Record what mediapipe 0.10.21's own BlazePose says about the regions a build gives it, for the test that holds
``fdf_build/models/blazepose.py`` to it (``tests/test_blazepose.py``).

Needs a venv with mediapipe 0.10.21 (wheels for CPython 3.9-3.12 only) beside fdf_build, never at run time:

    python3.11 -m venv /tmp/mp && /tmp/mp/bin/pip install -e . mediapipe==0.10.21
    /tmp/mp/bin/python tools/record_mediapipe_pose.py > tests/data/mediapipe_pose.json

For every face RetinaFace finds (>= 32 px) in ``tests/data/faces``, the head-and-shoulders region a build hands
to BlazePose (``person_region``), and ``mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1,
min_detection_confidence=0.3)``'s answer on it: its 33 landmarks in region pixels and their visibility, or null.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from fdf_build.models.faces import RetinaFaceDetector
from fdf_build.models.pose import person_region

FACES = Path(__file__).resolve().parents[1] / "tests" / "data" / "faces"


def main() -> None:
    import mediapipe as mp

    pose = mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1, min_detection_confidence=0.3)
    detector = RetinaFaceDetector()
    regions = []
    for entry in json.loads((FACES / "annotations.json").read_text())["images"]:
        rgb = cv2.cvtColor(cv2.imread(str(FACES / entry["file"])), cv2.COLOR_BGR2RGB)
        for face in detector(rgb):
            if min(face.box[2] - face.box[0], face.box[3] - face.box[1]) < 32:
                continue
            x0, y0, x1, y1 = person_region(face.box, rgb.shape[:2])
            found = pose.process(np.ascontiguousarray(rgb[y0:y1, x0:x1])).pose_landmarks
            record = {"file": entry["file"], "region": [x0, y0, x1, y1], "points": None, "visibility": None}
            if found is not None:
                record["points"] = [[round(lm.x * (x1 - x0), 2), round(lm.y * (y1 - y0), 2)] for lm in found.landmark]
                record["visibility"] = [round(lm.visibility, 4) for lm in found.landmark]
            regions.append(record)
    header = json.dumps({"made_by": "tools/record_mediapipe_pose.py", "mediapipe": mp.__version__})[:-1]
    print(header + ', "regions": [\n' + ",\n".join(json.dumps(r, separators=(",", ":")) for r in regions) + "\n]}")


if __name__ == "__main__":
    main()
