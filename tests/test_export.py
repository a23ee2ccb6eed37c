"""Exports, read back by the libraries their users train with: webdataset, Hugging Face datasets, and StyleGAN's
ImageFolderDataset (re-written below the way it reads a zip); local and on a real S3-compatible server."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from fdf_build.cli.main import cli
from fdf_build.dataset.synthetic import replicate_dataset
from fdf_build.split import SPLITS

from .s3server import bucket, objects, s3_endpoint  # noqa: F401 (fixtures)

FORMATS = ("webdataset", "parquet", "stylegan")
OPTIONS = {"webdataset": ["--shard-size", "3"], "parquet": ["--shard-size", "3", "--row-group-size", "2"],
           "stylegan": ["--label", "gender"]}


def run(*args, code=0):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """The demo build, with its faces' attributes."""
    out = tmp_path_factory.mktemp("demo") / "demo"
    run("demo", "--out", out)
    run("attributes", out)
    return out


@pytest.fixture(scope="module")
def exported(demo, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("exports")
    for fmt in FORMATS:
        run("export", demo, "--format", fmt, "--out", root / fmt, *OPTIONS[fmt])
    return {fmt: root / fmt for fmt in FORMATS}


def faces(dataset: Path, split: str) -> list[dict]:
    """What the FDF layout holds for each face of a split, to compare exports with."""
    d = dataset / split
    meta = json.loads((d / "fdf_metainfo.json").read_text())
    attributes = [json.loads(line) for line in (d / "attributes.jsonl").read_text().splitlines()] \
        if (d / "attributes.jsonl").is_file() else None
    landmarks, boxes = np.load(d / "landmarks.npy"), np.load(d / "bounding_box.npy")
    return [{"png": (d / "images" / f"{n}.png").read_bytes(), "meta": meta[str(n)], "landmarks": landmarks[n],
             "box": boxes[n], "attributes": attributes and attributes[n]} for n in range(len(meta))]


def rgb(png: bytes) -> np.ndarray:
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def test_webdataset_reads_the_export(demo, exported):
    import webdataset as wds

    for split in SPLITS:
        expected = faces(demo, split)
        shards = sorted(str(p) for p in (exported["webdataset"] / split).glob("*.tar"))
        assert len(shards) == -(-len(expected) // 3)  # --shard-size 3
        samples = list(wds.WebDataset(shards, shardshuffle=False, empty_check=False).decode("rgb8"))
        assert [s["__key__"] for s in samples] == [f"{split}_{n:08d}" for n in range(len(expected))]
        for n, (sample, face) in enumerate(zip(samples, expected)):
            record = sample["json"]
            assert (record["license"], record["license_url"], record["author"]) == (
                face["meta"]["license"], face["meta"]["license_url"], face["meta"]["author"]) and record["author"]
            assert (record["split"], record["image"], record["box"]) == (split, n, face["box"].tolist())
        sample, face = samples[-1], expected[-1]
        np.testing.assert_array_equal(sample["png"], rgb(face["png"]))
        np.testing.assert_array_equal(sample["landmarks.npy"], face["landmarks"])
        assert {k: v for k, v in sample["json"].items() if k in face["meta"]} == face["meta"]
        assert sample["json"]["attributes"] == {k: v for k, v in face["attributes"].items() if k != "image"}


def test_datasets_loads_the_parquet_export_offline(demo, exported, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets

    root = exported["parquet"]
    loaded = datasets.load_dataset("parquet", data_files={s: str(root / s / "*.parquet") for s in SPLITS},
                                   cache_dir=str(tmp_path / "cache"))
    for split in SPLITS:
        expected, rows = faces(demo, split), loaded[split]
        assert rows.num_rows == len(expected)
        assert list(rows["key"]) == [f"{split}_{n:08d}" for n in range(len(expected))]
        assert [(r["license"], r["author"]) for r in rows.select_columns(["license", "author"])] == [
            (f["meta"]["license"], f["meta"]["author"]) for f in expected]
        row, face = rows[len(expected) - 1], expected[-1]
        np.testing.assert_array_equal(np.asarray(row["image"]), rgb(face["png"]))  # datasets' Image feature
        np.testing.assert_array_equal(np.array(row["landmarks"], np.float32), face["landmarks"])
        assert row["box"] == face["box"].tolist() and row["index"] == len(expected) - 1
        meta = face["meta"]
        assert (row["photo_id"], row["user_nsid"], row["yfcc100m_line_idx"], row["date_taken"]) == (
            meta["photo_id"], meta["user_nsid"], int(meta["yfcc100m_line_idx"]), meta["date_taken"])
        assert row["original_bounding_box"] == meta["original_bounding_box"]
        assert row["keypoint_scores"] == meta["keypoint_scores"]
        attributes = face["attributes"]["faceAttributes"]
        assert row["attributes"]["faceAttributes"]["gender"] == attributes["gender"]
        assert row["attributes"]["faceAttributes"]["headPose"] == attributes["headPose"]
        assert json.loads(row["json"])["photo_url"] == meta["photo_url"]


def image_folder_dataset(path: Path):
    """StyleGAN3's ``training/dataset.py: ImageFolderDataset`` reading a zip, as it does it: every file whose
    extension PIL knows, sorted by name, is an image (HWC read by PIL, served CHW); ``dataset.json``'s
    ``labels`` are looked up by those names, and become int64 (one-hot when served) or float32."""
    import PIL.Image

    z = zipfile.ZipFile(path)
    PIL.Image.init()
    names = sorted(n for n in z.namelist() if os.path.splitext(n)[1].lower() in PIL.Image.EXTENSION)
    images = []
    for name in names:
        with z.open(name, "r") as f:
            image = np.array(PIL.Image.open(f))
        images.append(image.transpose(2, 0, 1))
    labels = json.loads(z.read("dataset.json"))["labels"] if "dataset.json" in z.namelist() else None
    if labels is not None:
        labels = dict(labels)
        labels = np.array([labels[name.replace("\\", "/")] for name in names])
        labels = labels.astype({1: np.int64, 2: np.float32}[labels.ndim])
    return names, images, labels, z


def test_stylegan_reads_the_zip_with_labels(demo, exported, tmp_path):
    for split in SPLITS:
        expected = faces(demo, split)
        names, images, labels, z = image_folder_dataset(exported["stylegan"] / f"{split}.zip")
        assert len(images) == len(expected) and images[0].shape == (3, 256, 256)
        np.testing.assert_array_equal(images[-1], rgb(expected[-1]["png"]).transpose(2, 0, 1))
        gender = [("female", "male").index(f["attributes"]["faceAttributes"]["gender"]) for f in expected]
        assert labels.dtype == np.int64 and labels.tolist() == gender
        for name, face in zip(names, expected):  # each image's license and author beside it
            record = json.loads(z.read(name.replace(".png", ".json")))
            assert (record["license"], record["author"]) == (face["meta"]["license"], face["meta"]["author"])
    run("export", demo, "--format", "stylegan", "--label", "split", "--out", tmp_path / "s")
    _, images, labels, _ = image_folder_dataset(tmp_path / "s" / "train+val.zip")
    counts = [len(faces(demo, s)) for s in SPLITS]
    assert labels.tolist() == [0] * counts[0] + [1] * counts[1] and len(images) == sum(counts)
    run("export", demo, "--format", "stylegan", "--label", "headPose", "--out", tmp_path / "h", "--splits", "val")
    _, _, labels, _ = image_folder_dataset(tmp_path / "h" / "val.zip")
    pose = [[f["attributes"]["faceAttributes"]["headPose"][k] for k in ("pitch", "roll", "yaw")]
            for f in faces(demo, "val")]
    assert labels.dtype == np.float32 and labels.shape == (counts[1], 3)
    np.testing.assert_allclose(labels, pose, rtol=1e-6)
    assert not (tmp_path / "h" / "train.zip").exists()


@pytest.fixture(scope="module")
def large(demo, tmp_path_factory) -> Path:
    """10,000 faces made of the demo's (at 64 px, to be quick), each its own photo, owner and license."""
    root = tmp_path_factory.mktemp("large") / "dataset"
    counts = replicate_dataset(demo, root, 10_000, size=64, attributes=False)
    assert sum(counts.values()) == 10_000 and min(counts.values()) > 0
    return root


def image_md5s(dataset: Path) -> list[str]:
    return [hashlib.md5(f["png"]).hexdigest() for s in SPLITS for f in faces(dataset, s)]


def exported_md5s(fmt: str, root: Path) -> list[str]:
    """The md5 of every image of an export, in its order, read from the files themselves."""
    if fmt == "stylegan":
        return [hashlib.md5(z.read(n)).hexdigest() for s in SPLITS for z in [zipfile.ZipFile(root / f"{s}.zip")]
                for n in sorted(z.namelist()) if n.endswith(".png")]
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return [hashlib.md5(image["bytes"]).hexdigest() for s in SPLITS for p in sorted((root / s).glob("*.parquet"))
                for image in pq.read_table(p, columns=["image"]).column("image").to_pylist()]
    return [hashlib.md5(tar.extractfile(m).read()).hexdigest() for s in SPLITS
            for p in sorted((root / s).glob("*.tar")) for tar in [tarfile.open(p)]
            for m in tar.getmembers() if m.name.endswith(".png")]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_large_export_holds_the_same_faces_in_the_same_bytes_every_time(fmt, large, tmp_path):
    options = {"webdataset": ["--shard-bytes", "2MB"], "parquet": ["--shard-size", "4000"], "stylegan": []}[fmt]
    run("export", large, "--format", fmt, "--out", tmp_path / "a", *options)
    run("export", large, "--format", fmt, "--out", tmp_path / "b", "--workers", "1", *options)
    first = tree(tmp_path / "a")
    assert first == tree(tmp_path / "b")
    assert exported_md5s(fmt, tmp_path / "a") == image_md5s(large)
    manifest = json.loads(first["manifest.json"])
    assert sum(s["faces"] for s in manifest["shards"]) == 10_000
    assert all(hashlib.md5(first[s["name"]]).hexdigest() == s["md5"] for s in manifest["shards"])
    if fmt == "webdataset":  # shards cut by size: each under the bound, but for its last face
        assert len(manifest["shards"]) > 4 and all(s["size"] < 2.1e6 for s in manifest["shards"])


def test_a_killed_export_resumes_to_the_same_bytes(demo, exported, tmp_path):
    """A real `fdf-build export` killed while it writes its last shard, then re-run, gives an uninterrupted
    export's bytes, keeping the shards it had finished."""
    dataset = tmp_path / "dataset"
    shutil.copytree(demo, dataset)
    last = dataset / "train" / "images" / f"{len(faces(demo, 'train')) - 1}.png"
    png = last.read_bytes()
    last.unlink()
    os.mkfifo(last)  # reading it blocks: the export stops inside its last shard until it is killed
    out = tmp_path / "out"
    args = [Path(sys.executable).with_name("fdf-build"), "export", dataset, "--format", "webdataset", "--out", out,
            "--workers", "1", "--splits", "train", *OPTIONS["webdataset"]]
    proc = subprocess.Popen([str(a) for a in args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shards = -(-len(faces(demo, "train")) // 3)
    deadline = time.monotonic() + 60
    while len(list((out / ".export").glob("train__*.json"))) < shards - 1 and time.monotonic() < deadline \
            and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists() and not (out / "train" / f"train-{shards - 1:05d}.tar").exists()
    last.unlink()
    last.write_bytes(png)
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"1 written now, {shards - 1} already there" in result.stdout
    expected = {k: v for k, v in tree(exported["webdataset"]).items() if not k.startswith("val/")}
    assert tree(out) == {**expected, "manifest.json": tree(out)["manifest.json"]}
    assert not list(out.rglob("*.tmp"))
    run("export", dataset, "--format", "webdataset", "--out", tmp_path / "all", *OPTIONS["webdataset"])
    assert tree(tmp_path / "all") == tree(exported["webdataset"])


def test_an_export_after_a_removal_starts_over_without_the_removed_faces(demo, exported, tmp_path):
    dataset = tmp_path / "dataset"
    shutil.copytree(demo, dataset)
    out = tmp_path / "out"
    shutil.copytree(exported["webdataset"], out)
    owner = faces(demo, "train")[0]["meta"]["user_nsid"]
    run("remove", dataset, "--user-nsid", owner)
    result = run("export", dataset, "--format", "webdataset", "--out", out, *OPTIONS["webdataset"])
    assert "started over" in result.output
    owners = [json.loads(tarfile.open(p).extractfile(m).read())["user_nsid"] for p in sorted(out.rglob("*.tar"))
              for m in tarfile.open(p).getmembers() if m.name.endswith(".json")]
    assert owner not in owners and len(owners) == sum(len(faces(dataset, s)) for s in SPLITS)
    run("export", dataset, "--format", "webdataset", "--out", tmp_path / "fresh", *OPTIONS["webdataset"])
    assert tree(out) == tree(tmp_path / "fresh")  # no shard of the old export left behind


def test_export_refuses_bad_input_in_one_line(demo, exported, tmp_path):
    plain = tmp_path / "plain"
    replicate_dataset(demo, plain, 12)
    (plain / "train" / "attributes.jsonl").unlink()
    for args, code, message in [
        (["--format", "stylegan", "--label", "gender", "--out", tmp_path / "x"], 2, "have no gender"),
        (["--format", "webdataset", "--label", "gender", "--out", tmp_path / "x"], 2, "StyleGAN"),
        (["--format", "stylegan", "--shard-size", "5", "--out", tmp_path / "x"], 2, "one zip per split"),
        (["--format", "webdataset", "--shard-bytes", "lots", "--out", tmp_path / "x"], 2, "not a size"),
        (["--format", "webdataset", "--splits", "test", "--out", tmp_path / "x"], 2, "train, val"),
    ]:
        result = CliRunner().invoke(cli, ["export", str(plain), *map(str, args)])
        assert result.exit_code == code and message in result.output, result.output
        assert "Traceback" not in result.output
    assert not (tmp_path / "x").exists()
    result = CliRunner().invoke(cli, ["export", str(demo), "--format", "webdataset", "--out",
                                      str(exported["webdataset"]), "--shard-size", "4"])
    assert result.exit_code == 2 and "other settings" in result.output and "--restart" in result.output


def test_exports_and_packs_to_s3_are_the_local_bytes(demo, exported, bucket, tmp_path):
    """Through s3fs, as a user with AWS credentials would, into a real S3 server on 127.0.0.1."""
    fdf_build = Path(sys.executable).with_name("fdf-build")
    for fmt in FORMATS:
        result = subprocess.run([str(fdf_build), "export", str(demo), "--format", fmt, "--out", f"{bucket}/{fmt}",
                                 *OPTIONS[fmt]], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert objects(f"{bucket}/{fmt}") == tree(exported[fmt])
    run("pack", demo, "--out", f"{bucket}/mirror")
    run("pack", demo, "--out", tmp_path / "mirror")
    stored = objects(f"{bucket}/mirror")
    assert stored == {k: v for k, v in tree(tmp_path / "mirror").items() if k != ".fdf.lock"}  # a local pack's lock
    manifest = json.loads(stored["manifest.json"])
    assert all(hashlib.md5(stored[f["name"]]).hexdigest() == f["md5"] for f in manifest["files"])
    result = CliRunner().invoke(cli, ["export", str(demo), "--format", "parquet", "--out", "s3://no-such-bucket/x"])
    assert result.exit_code == 1 and "no-such-bucket" in result.output and "Traceback" not in result.output
