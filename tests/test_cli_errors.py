"""Bad input gets one clear line and exit status 2 from every command that reads a dataset, never a traceback."""

import shutil

import pytest
from click.testing import CliRunner

from fdf_build.cli.download import download_command
from fdf_build.cli.main import cli

from .datasets import make_dataset

OWNERS = [f"owner{i}@N0{i % 3}" for i in range(6)]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("pristine") / "dataset", OWNERS)


@pytest.fixture
def dataset(pristine, tmp_path):
    return shutil.copytree(pristine, tmp_path / "dataset")


def malformed_metainfo(root):
    path = root / "train" / "fdf_metainfo.json"
    path.write_text(path.read_text()[:-40])  # cut short, as a killed copy leaves it
    return path


def missing_png(root):
    path = root / "train" / "images" / "1.png"
    path.unlink()
    return path


def unreadable_png(root):
    path = root / "train" / "images" / "0.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    return path


def missing_landmarks(root):
    path = root / "train" / "landmarks.npy"
    path.unlink()
    return path


# (command, damage, what the one line says); pack copies PNG bytes as they are, so it cares only that they exist
CASES = [
    *[(command, malformed_metainfo, "not a valid fdf_metainfo.json") for command in ("audit", "attributes", "report",
                                                                                     "pack")],
    ("attributes", missing_png, "missing"), ("report", missing_png, "missing"),
    ("pack", missing_png, "not a consistent FDF dataset, not packed: {dir}/images: 1 image(s) missing"),
    ("attributes", unreadable_png, "not a readable image"), ("report", unreadable_png, "not a readable image"),
    ("attributes", missing_landmarks, "no such file"), ("report", missing_landmarks, "no such file"),
    ("pack", missing_landmarks, "not a consistent FDF dataset, not packed: {path}: missing"),
]


@pytest.mark.parametrize("command,damage,says", CASES, ids=[f"{c}-{d.__name__}" for c, d, _ in CASES])
def test_a_damaged_dataset_is_one_line_and_exit_2(command, damage, says, dataset, tmp_path):
    path = damage(dataset)
    extra = {"audit": ["--base-url", "http://127.0.0.1:9"], "report": ["--out", str(tmp_path / "report")],
             "pack": ["--out", str(tmp_path / "mirror")]}.get(command, [])
    result = CliRunner().invoke(cli, [command, str(dataset), *extra])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert says.format(path=path, dir=dataset / "train") in errors[0], errors[0]
    assert str(path) in errors[0] or damage is missing_png and command == "pack", errors[0]  # pack names the folder
    if command == "pack":
        assert not (tmp_path / "mirror").exists()  # nothing half-packed to host


@pytest.mark.parametrize("command", ["attributes", "report", "pack"])
def test_the_undamaged_dataset_passes_the_same_commands(command, dataset, tmp_path):
    extra = {"report": ["--out", str(tmp_path / "report")], "pack": ["--out", str(tmp_path / "mirror")]}
    result = CliRunner().invoke(cli, [command, str(dataset), *extra.get(command, [])])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("text", ['{"files": [{"name": "a.zip"', '[1, 2]',
                                  '{"files": [{"name": "../a.zip", "url": "x", "md5": "0"}]}'])
def test_a_malformed_manifest_is_one_line_and_exit_2(text, tmp_path):
    (tmp_path / "manifest.json").write_text(text)
    args = [str(tmp_path / "copy"), "--manifest", str(tmp_path / "manifest.json"), "--base-url", "http://127.0.0.1:9"]
    result = CliRunner().invoke(download_command, args)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and ("not a manifest" in errors[0] or "plain file name" in errors[0]), errors
    assert not (tmp_path / "copy").exists()
