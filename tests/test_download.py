import hashlib
import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from fdf_build.cli.download import download_command
from fdf_build.cli.main import cli
from fdf_build.dataset.archive import UnsafeArchive, pack, safe_extract
from fdf_build.dataset.download import FileDownloader, download_dataset, load_manifest
from fdf_build.dataset.layout import verify_dataset
from fdf_build.fetch import make_session
from fdf_build.localserver import Fault, LocalServer, Redirect

from .conftest import REPO
from .datasets import make_dataset

OWNERS = [f"owner{i}@N0{i % 3}" for i in range(12)]


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """A dataset written by the writer, packed as a mirror: (dataset dir, mirror dir, manifest, routes)."""
    base = tmp_path_factory.mktemp("packed")
    dataset = make_dataset(base / "dataset", OWNERS)
    manifest = pack(dataset, base / "mirror")
    routes = {f"/m/{p.name}": p.read_bytes() for p in (base / "mirror").iterdir()}
    return dataset, base / "mirror", manifest, routes


def files_of(root: Path) -> dict:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    }


def run(target, mirror, *args, faults=None, **server_kw):
    _, mirror_dir, _, routes = mirror
    with LocalServer(routes, faults or {}, max_seconds=60, **server_kw) as server:
        result = CliRunner().invoke(
            download_command,
            [str(target), "--manifest", str(mirror_dir / "manifest.json"), "--base-url", server.url + "/m",
             "--retries", "3", *args],
        )
    return result, server


def test_pack_round_trips_through_download(mirror, tmp_path):
    dataset, _, manifest, _ = mirror
    names = {f["name"] for f in manifest["files"]}
    assert names == {"metainfo.zip", "cc-by-2.zip", "cc-by-nc-2.zip", "cc-by-sa-2.zip", "cc-by-nc-sa-2.zip"}
    result, _ = run(tmp_path / "copy", mirror)
    assert result.exit_code == 0, result.output
    copy = files_of(tmp_path / "copy")
    indexes = {name for name in copy if name.endswith(".index")}
    assert indexes == {"train/fdf_metainfo.json.index", "val/fdf_metainfo.json.index"}  # first search is fast
    assert {k: v for k, v in copy.items() if k not in indexes} == files_of(dataset)
    assert not list((tmp_path / "copy").glob("*.zip")) and not list((tmp_path / "copy").glob("*.part"))
    assert verify_dataset(tmp_path / "copy") == {"train": [], "val": []}


def test_pack_is_reproducible(mirror, tmp_path, monkeypatch):
    """The same dataset packs to the same bytes wherever it lies, whatever its files' times and modes and the clock."""
    import datetime
    import shutil

    dataset, mirror_dir, manifest, _ = mirror
    copy = tmp_path / "elsewhere" / "dataset"
    shutil.copytree(dataset, copy)
    when = datetime.datetime(2001, 2, 3, 4, 5, 6).timestamp()
    for path in copy.rglob("*"):
        if path.is_file():
            os.utime(path, (when, when))
            path.chmod(0o600)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    monkeypatch.setattr(time, "time", lambda: 4102444800.0)  # 2100-01-01
    monkeypatch.setattr(time, "localtime", lambda *a: datetime.datetime(2100, 1, 1).timetuple())
    assert pack(copy, tmp_path / "again") == manifest
    assert files_of(tmp_path / "again") == files_of(mirror_dir)


def test_second_run_downloads_nothing(mirror, tmp_path):
    run(tmp_path / "copy", mirror, "--keep-archives")
    result, server = run(tmp_path / "copy", mirror, "--keep-archives")
    assert result.exit_code == 0, result.output
    assert server.requests == []
    # without the extraction markers, the kept archives are verified by md5 and not fetched again
    for marker in (tmp_path / "copy" / ".fdf_download").iterdir():
        marker.unlink()
    result, server = run(tmp_path / "copy", mirror)
    assert result.exit_code == 0 and server.requests == [] and "verified - already downloaded" in result.output


def test_dropped_connection_resumes_with_range(mirror, tmp_path):
    result, server = run(tmp_path / "copy", mirror, faults={"/m/cc-by-2.zip": [Fault("cut"), Fault("drop")]})
    assert result.exit_code == 0, result.output
    ranges = [r for p, r in server.range_headers if p == "/m/cc-by-2.zip"]
    assert ranges[0] == "" and ranges[-1].startswith("bytes=") and ranges[-1] != "bytes=0-"
    assert verify_dataset(tmp_path / "copy") == {"train": [], "val": []}


def test_server_ignoring_range_restarts_cleanly(mirror, tmp_path):
    result, server = run(tmp_path / "copy", mirror, faults={"/m/metainfo.zip": [Fault("cut")]}, ignore_range=True)
    assert result.exit_code == 0, result.output
    assert sum(p == "/m/metainfo.zip" for p, _ in server.requests) == 2
    assert verify_dataset(tmp_path / "copy") == {"train": [], "val": []}


def test_5xx_and_429_retry_after(mirror, tmp_path):
    faults = {
        "/m/cc-by-nc-2.zip": [Fault("status", 500), Fault("status", 502)],
        "/m/cc-by-sa-2.zip": [Fault("status", 429, retry_after="1")],
    }
    result, server = run(tmp_path / "copy", mirror, faults=faults)
    assert result.exit_code == 0, result.output
    assert len(server.hits("/m/cc-by-nc-2.zip")) == 3
    first, second = server.hits("/m/cc-by-sa-2.zip")
    assert second - first >= 0.95


def test_wrong_md5_fails_and_keeps_nothing(mirror, tmp_path):
    _, mirror_dir, manifest, routes = mirror
    bad = json.loads(json.dumps(manifest))
    bad["files"][1]["md5"] = "0" * 32
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with LocalServer(routes, max_seconds=60) as server:
        result = CliRunner().invoke(
            download_command, [str(tmp_path / "copy"), "--manifest", str(tmp_path / "bad.json"),
                               "--base-url", server.url + "/m", "--retries", "0"])
    name = bad["files"][1]["name"]
    assert result.exit_code == 1
    assert re.search(rf"{re.escape(name)} \([\d,]+ bytes\): failed - .*md5 mismatch", result.output)
    assert f"failed: {name}" in result.output
    assert not (tmp_path / "copy" / name).exists() and not (tmp_path / "copy" / f"{name}.part").exists()


def test_redirect_loop_fails_that_file_with_one_line_and_the_mirror_still_serves(mirror, tmp_path):
    _, mirror_dir, manifest, routes = mirror
    name = manifest["files"][1]["name"]
    looping = {**routes, f"/m/{name}": Redirect(f"/m/{name}")}
    with LocalServer(looping, max_seconds=60) as server:
        args = [str(tmp_path / "copy"), "--manifest", str(mirror_dir / "manifest.json"), "--base-url", server.url + "/m"]
        result = CliRunner().invoke(download_command, args)
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit)  # a message, no traceback
        assert re.search(rf"{re.escape(name)} \([\d,]+ bytes\): failed - .*request_error: TooManyRedirects",
                         result.output), result.output
        assert len(server.hits(f"/m/{name}")) == 31  # not retried: a loop stays a loop
        # the same file from a mirror that serves it: the download completes
        with LocalServer(routes, max_seconds=60) as good:
            result = CliRunner().invoke(download_command, [*args, "--mirror", good.url + "/m"])
    assert result.exit_code == 0, result.output
    assert verify_dataset(tmp_path / "copy") == {"train": [], "val": []}


def test_mirrors_are_tried_in_order(mirror, tmp_path):
    _, mirror_dir, _, routes = mirror
    with LocalServer({}, max_seconds=60) as empty, LocalServer(routes, max_seconds=60) as good:
        result = CliRunner().invoke(
            download_command, [str(tmp_path / "copy"), "--manifest", str(mirror_dir / "manifest.json"),
                               "--base-url", empty.url, "--mirror", good.url + "/m", "--retries", "0"])
    assert result.exit_code == 0, result.output
    assert len(empty.requests) == 5 and verify_dataset(tmp_path / "copy") == {"train": [], "val": []}


def test_some_licenses_only(mirror, tmp_path):
    result, server = run(tmp_path / "copy", mirror, "--licenses", "cc-by-2,cc-by-sa-2")
    assert result.exit_code == 0, result.output
    assert {p for p, _ in server.requests} == {"/m/metainfo.zip", "/m/cc-by-2.zip", "/m/cc-by-sa-2.zip"}
    result, _ = run(tmp_path / "x", mirror, "--licenses", "cc-by-nd-2")
    assert result.exit_code == 2 and "unknown license archive" in result.output


def test_dry_run_and_verify_only(mirror, tmp_path):
    result, server = run(tmp_path / "copy", mirror, "--dry-run")
    assert result.exit_code == 0 and server.requests == [] and "metainfo.zip" in result.output
    assert "planned" in result.output and not (tmp_path / "copy").exists()
    result, _ = run(tmp_path / "copy", mirror, "--verify-only")  # nothing there: no copy to verify, bad input
    assert result.exit_code == 2 and "no file of the manifest is there" in result.output
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "metainfo.zip").write_bytes((mirror[1] / "metainfo.zip").read_bytes())
    result, _ = run(tmp_path / "copy", mirror, "--verify-only")  # a copy, incomplete: the check fails
    assert result.exit_code == 1 and "not downloaded" in result.output


#: the md5s FDF256's authors publish, copied by hand from hukkelas/FDF's download_fdf256.py (commit e173b65)
PUBLISHED_MD5 = {
    "metainfo.zip": "b790269bd64e9a6c1b1b032a9ff60410",
    "cc-by-2.zip": "e45e313358a5912927ed3a8aa620b3b1",
    "cc-by-nc-2.zip": "12c531a59a47783bca53d69b04653805",
    "cc-by-sa-2.zip": "2cd40e77def0e14148530d7f250a199e",
    "cc-by-nc-sa-2.zip": "afad28fdb033ae57ce5e5e2d95a6be18",
}


def test_default_download_checks_every_archive_against_the_published_md5s(tmp_path):
    """Served other bytes under the published archives' names, a download with the default manifest refuses each
    one, naming the md5 FDF publishes for it and the one it got, and keeps nothing."""
    routes = {f"/m/{name}": f"not the published {name}".encode() for name in PUBLISHED_MD5}
    with LocalServer(routes, max_seconds=60) as server:
        result = CliRunner().invoke(download_command,
                                    [str(tmp_path / "copy"), "--base-url", server.url + "/m", "--retries", "0"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    for name, published in PUBLISHED_MD5.items():
        got = hashlib.md5(routes[f"/m/{name}"]).hexdigest()
        assert re.search(rf"{re.escape(name)}: failed - .*md5 mismatch: got {got} .*expected {published}$",
                         result.output, re.M), result.output
    assert f"5 of 5 file(s) failed: {', '.join(PUBLISHED_MD5)}." in result.output
    assert not (tmp_path / "copy").exists() or not any((tmp_path / "copy").rglob("*"))


def _zip(path: Path, entries: list[tuple[str, bytes, int]]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            z.writestr(info, data)
    return path


@pytest.mark.parametrize(
    "entry, message",
    [
        (("../evil.txt", b"x", stat.S_IFREG | 0o644), "leaving the target"),
        (("train/../../evil.txt", b"x", stat.S_IFREG | 0o644), "leaving the target"),
        (("/tmp/evil.txt", b"x", stat.S_IFREG | 0o644), "absolute path"),
        (("train/link", b"/etc/passwd", stat.S_IFLNK | 0o777), "symbolic link"),
        (("train/fifo", b"", stat.S_IFIFO | 0o644), "special file"),
    ],
)
def test_unsafe_archives_are_refused_whole(tmp_path, entry, message):
    archive = _zip(tmp_path / "a.zip", [("train/ok.txt", b"fine", stat.S_IFREG | 0o644), entry])
    target = tmp_path / "target"
    with pytest.raises(UnsafeArchive, match=message):
        safe_extract(archive, target)
    assert list(target.rglob("*")) == [] and not (tmp_path / "evil.txt").exists()


def test_unsafe_archive_through_the_downloader_fails_cleanly(tmp_path):
    data = _zip(tmp_path / "evil.zip", [("../../evil.txt", b"x", stat.S_IFREG | 0o644)]).read_bytes()
    import hashlib

    manifest = {"files": [{"name": "metainfo.zip", "url": "metainfo.zip", "md5": hashlib.md5(data).hexdigest()}]}
    (tmp_path / "m.json").write_text(json.dumps(manifest))
    with LocalServer({"/metainfo.zip": data}, max_seconds=60) as server:
        result = CliRunner().invoke(
            download_command, [str(tmp_path / "t"), "--manifest", str(tmp_path / "m.json"), "--base-url", server.url])
    assert result.exit_code == 1 and "UnsafeArchive" in result.output and "path leaving the target" in result.output
    assert not (tmp_path / "evil.txt").exists()


def test_killed_download_completes_on_rerun(mirror, tmp_path):
    _, mirror_dir, _, routes = mirror
    target = tmp_path / "copy"
    killed = threading.Event()  # the server sends half the file, then the rest only after the kill
    with LocalServer(routes, {"/m/cc-by-2.zip": [Fault("pause", release=killed)]}, max_seconds=60) as server:
        proc = subprocess.Popen(
            [sys.executable, str(REPO / "download_fdf256.py"), str(target), "--manifest",
             str(mirror_dir / "manifest.json"), "--base-url", server.url + "/m", "--workers", "1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        part = target / "cc-by-2.zip.part"
        deadline = time.monotonic() + 30
        while not (part.exists() and part.stat().st_size > 0) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed.set()
        assert part.exists() and not (target / "cc-by-2.zip").exists()
        result = CliRunner().invoke(
            download_command, [str(target), "--manifest", str(mirror_dir / "manifest.json"),
                               "--base-url", server.url + "/m"])
    assert result.exit_code == 0, result.output
    resumed = [r for p, r in server.range_headers if p == "/m/cc-by-2.zip"][-1]
    assert resumed.startswith("bytes=") and resumed != "bytes=0-"
    assert verify_dataset(target) == {"train": [], "val": []}


def test_verify_command(mirror, tmp_path):
    dataset = mirror[0]
    assert CliRunner().invoke(cli, ["verify", str(dataset)]).exit_code == 0
    broken = make_dataset(tmp_path / "d", OWNERS[:4])
    next((broken / "train" / "images").iterdir()).unlink()
    result = CliRunner().invoke(cli, ["verify", str(broken)])
    assert result.exit_code == 1 and "1 image(s) missing" in result.output


def test_downloader_unit_restart_when_part_is_longer_than_the_file(tmp_path):
    body = os.urandom(5000)
    import hashlib

    (tmp_path / "f.bin.part").write_bytes(os.urandom(9000))
    with LocalServer({"/f.bin": body}, max_seconds=30) as server:
        FileDownloader(make_session(1), retries=0).download(
            [server.url + "/f.bin"], tmp_path / "f.bin", md5=hashlib.md5(body).hexdigest(), size=5000,
            progress=lambda *a: None)
    assert (tmp_path / "f.bin").read_bytes() == body


def test_download_dataset_library_call(mirror, tmp_path):
    _, mirror_dir, _, routes = mirror
    with LocalServer(routes, max_seconds=60) as server:
        report = download_dataset(tmp_path / "c", manifest=load_manifest(mirror_dir / "manifest.json"),
                                  base_url=server.url + "/m")
    assert report.ok and {f.status for f in report.files} == {"downloaded"}


def test_archive_larger_than_free_disk_is_refused(tmp_path, monkeypatch):
    import shutil as _shutil
    from collections import namedtuple

    archive = _zip(tmp_path / "big.zip", [("train/a.bin", b"x" * 10_000, stat.S_IFREG | 0o644)])
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(_shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 5_000, 5_000))
    with pytest.raises(UnsafeArchive, match="needs 10,000 bytes, 5,000 free"):
        safe_extract(archive, tmp_path / "target")
    assert not (tmp_path / "target" / "train").exists()
