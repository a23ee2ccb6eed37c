"""One clear line for every bad file: each (damaged input, command) below once ended in a traceback (or in a wrong
answer with exit 0). Now each is one ``Error:`` line naming the file and the problem, exit status 2 for bad input
(1 where the command's own answer is "not consistent", a failed download, or a full disk), and nothing lost."""

import errno
import io
import json
import re
import shutil
import sqlite3
import struct
import zipfile
import zlib
from urllib.parse import urlsplit

import numpy as np
import pytest
from click.testing import CliRunner

from fdf_build.cli.download import download_command
from fdf_build.cli.main import cli
from fdf_build.cli.search import search_command
from fdf_build.dataset.writer import write_geometry
from fdf_build.demo import demo_photos
from fdf_build.geometry import CropGeometry
from fdf_build.localserver import LocalServer
from fdf_build.sources.metadata import format_line
from fdf_build.sources.synthetic import synthetic_photo

from .datasets import make_dataset

OWNERS = ["amy@N00", "bob@N01", "cat@N02", "bob@N01"]
NESTED = "[" * 100_000 + "]" * 100_000


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = make_dataset(tmp_path_factory.mktemp("pristine") / "dataset", OWNERS, val_fraction=0.5, distinct=True)
    write_geometry(root, CropGeometry())  # what a rehydration needs before it reads the faces
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A real build of two photos (its shards, build.json and stats), and the arguments that resume it."""
    base = tmp_path_factory.mktemp("built")
    data = demo_photos()
    photos = [synthetic_photo(i, nsid=nsid) for i, nsid in enumerate(["amy@N00", "bob@N01"])]
    routes = {urlsplit(p.download_url).path: data[name]
              for p, name in zip(photos, ["whitehouse_obama_biden.jpg", "codait_luciano.jpg"])}
    (base / "yfcc.tsv").write_text("".join(format_line(p) + "\n" for p in photos))
    args = ["build", str(base / "yfcc.tsv"), "--keypoints", "none", "--crawl-date", "2026-01-01"]
    with LocalServer(routes, max_seconds=120) as server:
        result = CliRunner().invoke(cli, [*args, "--out", str(base / "out"), "--base-url", server.url])
    assert result.exit_code == 0, result.output
    return base / "out", args


def metainfo(root, split="train"):
    return root / split / "fdf_metainfo.json"


def edit_metainfo(root, change):
    path = metainfo(root)
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))
    return path


def nested(root):
    path = metainfo(root)
    path.write_text(path.read_text()[:-1] + f', "9999": {{"x": {NESTED}}}}}')
    return path


def not_an_object(root):
    return edit_metainfo(root, lambda meta: meta.update({"0": ["a", "list"]}))


def npy(kind):
    def damage(root):
        path = root / "train" / "landmarks.npy"
        if kind == "garbage":
            path.write_bytes(b"\x93NUMPY not really" + bytes(50))
        elif kind == "pickled":
            np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        else:
            path.write_bytes(path.read_bytes()[:-8])
        return path
    damage.__name__ = f"{kind}_npy"
    return damage


def etc_passwd_key(root):
    return edit_metainfo(root, lambda meta: meta.update({"/etc/passwd": meta.pop(str(len(meta) - 1))}))


def wrong_types(root):
    return edit_metainfo(root, lambda meta: meta["0"].update(original_bounding_box="10,20,30,40"))


def huge_photo_id(root):
    return edit_metainfo(root, lambda meta: meta["0"].update(photo_id=10 ** 30))


def invalid_utf8(root):
    path = metainfo(root)
    data = path.read_bytes()
    assert b'"photo ' in data
    path.write_bytes(data.replace(b'"photo ', b'"photo \xff\xfe', 1))
    return path


def folder(root):
    path = metainfo(root)
    path.unlink()
    path.mkdir()
    return path


def corrupt_ledger(root):
    path = root / "removed.jsonl"
    path.write_text('{"removal": "r1", "photo_id": 1}\n{"removal": "r2", "photo_\n')
    return path


def binary(root):
    path = root.parent / "ids.txt"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe" + bytes(range(256)))
    return path


REMOVE = ["remove", "{root}", "--user-nsid", "bob@N01"]
SEARCH = ["search", "{root}", "--user-nsid", "bob@N01"]
REHYDRATE = ["rehydrate", "{root}", "--base-url", "http://127.0.0.1:9", "--retries", "0"]
COMMANDS = {
    "verify": ["verify", "{root}"], "pack": ["pack", "{root}", "--out", "{tmp}/mirror"],
    "report": ["report", "{root}", "--out", "{tmp}/report"], "attributes": ["attributes", "{root}"],
    "rehydrate": REHYDRATE, "remove": REMOVE, "search": SEARCH,
    "remove --nsid-file": ["remove", "{root}", "--nsid-file", "{path}"],
    "search --nsid-file": ["search", "{root}", "--nsid-file", "{path}"],
}
# (command, damage, exit status); verify answers "not consistent" (1) and names the problem
CASES = [
    *[(c, nested, 2) for c in ("pack", "report", "attributes", "rehydrate", "remove", "search")], ("verify", nested, 1),
    ("pack", not_an_object, 2), ("attributes", not_an_object, 2), ("verify", not_an_object, 1),
    *[(c, npy(kind), 2) for c in ("remove", "report") for kind in ("garbage", "pickled", "short")],
    ("remove", etc_passwd_key, 2), ("search", etc_passwd_key, 2),
    *[(c, wrong_types, 2) for c in ("report", "attributes", "rehydrate")],
    ("search", huge_photo_id, 2), ("remove", huge_photo_id, 2),
    ("search", invalid_utf8, 2), ("remove", invalid_utf8, 2),
    ("search", folder, 2), ("pack", folder, 2), ("remove", corrupt_ledger, 2),
    ("remove --nsid-file", binary, 2), ("search --nsid-file", binary, 2),
]


def one_error_line(result, status, path) -> str:
    assert result.exit_code == status, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit), result.output
    # what a terminal shows of each line: progress bars end with carriage returns and cursor moves, not newlines
    shown = [re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", line).split("\r")[-1].lstrip()
             for line in result.stderr.splitlines()]
    errors = [line for line in shown if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert str(path) in result.stderr, result.stderr  # the file is named
    return errors[0]


@pytest.mark.parametrize("command,damage,status", CASES, ids=[f"{c}-{d.__name__}" for c, d, _ in CASES])
def test_a_bad_file_is_one_line(command, damage, status, pristine, tmp_path):
    root = shutil.copytree(pristine, tmp_path / "dataset")
    path = damage(root)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and p != path}
    argv = [a.format(root=root, tmp=tmp_path, path=path) for a in COMMANDS[command]]
    if argv[0] == "search":
        result = CliRunner().invoke(search_command, argv[1:])  # search_username.py
    else:
        result = CliRunner().invoke(cli, argv)
    one_error_line(result, status, path)
    assert not (tmp_path / "mirror" / "manifest.json").exists()
    if command == "remove" and damage is not corrupt_ledger:
        # nothing lost: the splits are as they were (the request is on the blocklist, to be finished)
        assert {p: b for p, b in before.items() if p.suffix != ".txt" and ".index" not in p.name
                and p.name != ".fdf.lock"} == {p: p.read_bytes() for p in before if p.suffix != ".txt"
                                                and ".index" not in p.name and p.name != ".fdf.lock"}


def damaged_shard_png(out):
    path = next((out / ".work").glob("shard_*/faces/*.png"))
    path.unlink()
    return path


def shard_file(name, text):
    def damage(out):
        path = next((out / ".work").glob(f"shard_*/{name}"))
        path.write_text(text)
        return path
    damage.__name__ = f"corrupt_{name.strip('_').replace('.', '_')}"
    return damage


def corrupt_build_json(out):
    path = out / ".work" / "build.json"
    path.write_text('{"identity": {"settings": ')
    return path


BUILD_CASES = [damaged_shard_png, shard_file("faces.jsonl", '{"_file": "0_0.png", "yfcc100m_li\n'),
               shard_file("_stats.json", "[1, 2]"), corrupt_build_json, corrupt_ledger]


@pytest.mark.parametrize("damage", BUILD_CASES, ids=[d.__name__ for d in BUILD_CASES])
def test_a_damaged_build_is_one_line_on_resume(damage, built, tmp_path):
    out, args = built
    copy = shutil.copytree(out, tmp_path / "out")
    path = damage(copy)
    result = CliRunner().invoke(cli, [*args, "--out", str(copy), "--base-url", "http://127.0.0.1:9"])
    one_error_line(result, 2, path)


@pytest.mark.parametrize("command", ["scan", "build"])
def test_a_binary_blocklist_is_one_line(command, built, tmp_path):
    out, args = built
    path = binary(tmp_path / "x")
    argv = [*args[:2], "--blocklist", str(path)] + (["--out", str(tmp_path / "o")] if command == "build" else [])
    result = CliRunner().invoke(cli, [command, *argv[1:]])
    one_error_line(result, 2, path)


def test_a_full_disk_while_indexing_keeps_the_index_in_memory(built, tmp_path, monkeypatch):
    """The search index is a cache: a disk too full to save it leaves it in memory, and the build ends."""
    from fdf_build.privacy import index

    out, args = built
    copy = shutil.copytree(out, tmp_path / "out")
    real = index.commit

    def full(tmp, path):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(index, "commit", full)
    result = CliRunner().invoke(cli, [*args, "--out", str(copy), "--base-url", "http://127.0.0.1:9"])
    monkeypatch.setattr(index, "commit", real)
    assert result.exit_code == 0 and (copy / "stats.json").is_file(), result.output
    assert not list(copy.rglob("*.index"))
    result = CliRunner().invoke(search_command, [str(copy), "--user-nsid", "amy@N00"])
    assert result.exit_code == 0 and "face(s) found" in result.stderr


def test_a_full_disk_in_remove_is_one_line_and_loses_nothing(pristine, tmp_path, monkeypatch):
    from fdf_build.privacy import removal

    root = shutil.copytree(pristine, tmp_path / "dataset")
    before = (metainfo(root).read_bytes(), metainfo(root, "val").read_bytes())

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(root / ".staging-remove-x"))

    monkeypatch.setattr(removal, "write_split", full)
    result = CliRunner().invoke(cli, REMOVE[:1] + [str(root)] + REMOVE[2:])
    line = one_error_line(result, 1, root)
    assert "No space left on device" in line
    assert (metainfo(root).read_bytes(), metainfo(root, "val").read_bytes()) == before
    assert not list(root.glob(".staging-*"))


def zip_bytes(members: dict, compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def deflate64(data: bytes) -> bytes:
    """A stored zip relabelled as deflate64 (method 9), which Python's zipfile cannot read."""
    out = bytearray(data)
    for signature, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        at = out.find(signature)
        out[at + offset:at + offset + 2] = struct.pack("<H", 9)
    return bytes(out)


def corrupt_deflate(data: bytes) -> bytes:
    out = bytearray(data)
    start = out.find(b"train/fdf_metainfo.json") + len("train/fdf_metainfo.json")
    out[start:start + 12] = bytes(12)
    return bytes(out)


@pytest.mark.parametrize("make", [deflate64, corrupt_deflate])
def test_an_archive_that_cannot_be_decompressed_fails_that_file_in_one_line(make, tmp_path):
    members = {"train/fdf_metainfo.json": json.dumps({str(i): {"x": i} for i in range(500)})}
    plain = zip_bytes(members, zipfile.ZIP_STORED if make is deflate64 else zipfile.ZIP_DEFLATED)
    data = make(plain)
    with pytest.raises((NotImplementedError, zlib.error, zipfile.BadZipFile)):
        zipfile.ZipFile(io.BytesIO(data)).read("train/fdf_metainfo.json")
    import hashlib

    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"files": [{"name": "metainfo.zip", "url": "metainfo.zip", "size": len(data),
                                               "md5": hashlib.md5(data).hexdigest()}]}))
    with LocalServer({"/m/metainfo.zip": data}, max_seconds=60) as server:
        result = CliRunner().invoke(download_command, [str(tmp_path / "copy"), "--manifest", str(manifest),
                                                       "--base-url", server.url + "/m"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "metainfo.zip" in result.output and "failed" in result.output
    assert not (tmp_path / "copy" / "train").exists()  # nothing of it moved in
