import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from fdf_build.attributes import OnnxAttributeModel, blur, exposure, head_pose, noise
from fdf_build.cli import cli
from fdf_build.data import FDF256Dataset
from fdf_build.layout import load_metainfo

from .conftest import DEMO_DATA, load_rgb
from .datasets import make_dataset


@pytest.fixture(scope="module")
def face_gray():
    """The face region of a real, sharp, well-lit portrait."""
    image = load_rgb(DEMO_DATA / "codait_luciano.jpg")
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[46:220, 136:265].astype(np.float64)


def test_blurred_copy_scores_blurrier(face_gray):
    sharp, soft = blur(face_gray), blur(cv2.GaussianBlur(face_gray, (0, 0), 3))
    assert soft["value"] > sharp["value"] + 0.3
    assert sharp["blurLevel"] == "low" and soft["blurLevel"] == "high"


def test_darkened_copy_is_under_exposed(face_gray):
    assert exposure(face_gray)["exposureLevel"] == "goodExposure"
    assert exposure(face_gray * 0.25)["exposureLevel"] == "underExposure"
    assert exposure(np.clip(face_gray * 2.5, 0, 255))["exposureLevel"] == "overExposure"


def test_added_noise_scores_noisier(face_gray):
    rng = np.random.default_rng(0)
    clean = noise(face_gray)
    noisy = noise(np.clip(face_gray + rng.normal(0, 15, face_gray.shape), 0, 255))
    assert clean["noiseLevel"] == "low" and noisy["noiseLevel"] == "high"
    assert noisy["value"] > 5 * clean["value"]


def test_head_pose_on_frontal_turned_flipped_and_rotated_faces(detector, shared_faces):
    image = load_rgb(DEMO_DATA / "codait_luciano.jpg")
    (frontal,) = detector(image)
    pose = head_pose(frontal.keypoints)
    assert abs(pose["yaw"]) < 12 and abs(pose["roll"]) < 8 and abs(pose["pitch"]) < 25

    turned_image = load_rgb(shared_faces / "pexels_woman_turned.png")
    (turned,) = detector(turned_image)
    yaw = head_pose(turned.keypoints)["yaw"]
    assert abs(yaw) > 25
    (mirrored,) = detector(np.ascontiguousarray(turned_image[:, ::-1]))
    assert np.sign(head_pose(mirrored.keypoints)["yaw"]) == -np.sign(yaw)

    h, w = image.shape[:2]
    rotation = cv2.getRotationMatrix2D((w / 2, h / 2), -20, 1.0)  # negative angle = clockwise on screen
    (rotated,) = detector(cv2.warpAffine(image, rotation, (w, h)))
    assert head_pose(rotated.keypoints)["roll"] == pytest.approx(pose["roll"] + 20, abs=6)


def test_head_pose_missing_eye_is_left_out():
    kp = np.full((7, 2), np.nan)
    kp[0] = [10, 10]
    assert head_pose(kp) is None


def _toy_model(path: Path) -> Path:
    """A randomly initialised ONNX model following the attribute-model contract (no weights to download)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["features"])]
    inits, outputs = [], []
    for name, width in (("smile", 1), ("gender", 2), ("emotion", 8), ("unrelated", 3)):
        inits.append(numpy_helper.from_array(rng.normal(size=(3, width)).astype(np.float32), f"w_{name}"))
        nodes.append(helper.make_node("MatMul", ["features", f"w_{name}"], [f"raw_{name}"]))
        nodes.append(helper.make_node("Sigmoid", [f"raw_{name}"], [name]))
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, width]))
    graph = helper.make_graph(nodes, "toy", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
                              outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_attributes_command_and_model_fields(tmp_path):
    root = make_dataset(tmp_path / "ds", [f"u{i}@N00" for i in range(6)])
    result = CliRunner().invoke(cli, ["attributes", str(root)])
    assert result.exit_code == 0, result.output
    for split in ("train", "val"):
        meta = load_metainfo(root / split)
        lines = (root / split / "attributes.jsonl").read_text().splitlines()
        assert len(lines) == len(meta)
        record = json.loads((root / split / "attributes" / "0.json").read_text())
        attrs = record["faceAttributes"]
        assert set(attrs) == {"blur", "exposure", "noise", "headPose"}  # no model: no guessed fields
        assert record["faceRectangle"]["width"] == round(meta["0"]["original_bounding_box"][2]
                                                         - meta["0"]["original_bounding_box"][0])
        assert re.fullmatch(r"[0-9a-f-]{36}", record["faceId"])
    model = _toy_model(tmp_path / "toy.onnx")
    result = CliRunner().invoke(cli, ["attributes", str(root), "--attribute-model", str(model)])
    assert result.exit_code == 0, result.output
    attrs = json.loads((root / "train" / "attributes" / "0.json").read_text())["faceAttributes"]
    assert 0 <= attrs["smile"] <= 1 and attrs["gender"] in ("female", "male")
    assert set(attrs["emotion"]) == set(OnnxAttributeModel.EMOTIONS)
    assert "age" not in attrs and "unrelated" not in attrs


def test_report_renders_and_references_real_images(tmp_path):
    root = make_dataset(tmp_path / "ds", [f"u{i}@N00" for i in range(8)])
    CliRunner().invoke(cli, ["attributes", str(root)])
    result = CliRunner().invoke(cli, ["report", str(root), "--out", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "report" / "index.html").read_text()
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert {"licenses.png", "splits.png", "face_sizes.png", "faces_per_photo.png", "keypoints.png",
            "head_pose.png", "samples.png"} == set(sources)
    for src in sources:
        image = cv2.imread(str(tmp_path / "report" / src))
        assert image is not None and image.shape[0] > 100 and image.std() > 5, src


def test_loader_reads_the_layout(tmp_path):
    root = make_dataset(tmp_path / "ds", [f"u{i}@N00" for i in range(5)])
    train = FDF256Dataset(root, "train")
    meta = load_metainfo(root / "train")
    assert len(train) == len(meta) > 0
    item = train[-1]
    assert item["image"].shape == (256, 256, 3) and item["image"].dtype == np.uint8
    assert item["keypoints"].shape == (7, 2) and item["box"].shape == (4,)
    assert item["metainfo"].to_json() == meta[str(len(meta) - 1)]
    np.testing.assert_allclose(item["keypoints"], np.load(root / "train" / "landmarks.npy")[-1])
    flipped = FDF256Dataset(root, "train", transform=lambda im: im[:, ::-1])
    np.testing.assert_array_equal(flipped[0]["image"], train[0]["image"][:, ::-1])
    with pytest.raises(IndexError):
        train[len(train)]
    with pytest.raises(ValueError, match="split"):
        FDF256Dataset(root, "test")
    with pytest.raises(FileNotFoundError, match="download or build"):
        FDF256Dataset(tmp_path / "nothing", "train")
