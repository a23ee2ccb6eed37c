"""download_fdf256.py when a source cannot be reached: it gives the source up at once (no retry, no backoff), says
why once per file, says what to do next, and leaves nothing behind. No network: an unresolvable ``.invalid`` name,
a refused loopback port, and TLS spoken to a plain-HTTP loopback server."""

import hashlib
import json
import socket
import subprocess
import sys

import pytest
from click.testing import CliRunner

from fdf_build.cli.download import download_command
from fdf_build.dataset.archive import pack
from fdf_build.dataset.download import FileDownloader, download_dataset, load_manifest
from fdf_build.fetch import make_session
from fdf_build.localserver import LocalServer

from .conftest import REPO
from .datasets import make_dataset

NAMES = ["metainfo.zip", "cc-by-2.zip", "cc-by-nc-2.zip", "cc-by-sa-2.zip", "cc-by-nc-sa-2.zip"]
NOTE = "That host is gone: use --base-url or --mirror."


def refused_port() -> int:
    """A loopback port nobody listens on (bound, then released), so connecting to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_manifest(path, base: str, *, sizes: dict | None = None, note: str = NOTE):
    files = [{"name": n, "url": f"{base}/{n}", "md5": hashlib.md5(n.encode()).hexdigest()} for n in NAMES]
    for f in files:
        if sizes and f["name"] in sizes:
            f["size"] = sizes[f["name"]]
    path.write_text(json.dumps({"note": note, "files": files}))
    return path


@pytest.mark.parametrize("base, source, cause", [
    ("https://fdf256-mirror.invalid/files", "https://fdf256-mirror.invalid", "name not resolved"),
    ("http://127.0.0.1:{port}/files", "http://127.0.0.1:{port}", "connection refused"),
])
def test_unreachable_host_fails_fast_with_one_line_per_file_and_what_to_do(tmp_path, base, source, cause):
    port = refused_port()
    manifest = write_manifest(tmp_path / "manifest.json", base.format(port=port))
    target = tmp_path / "data" / "fdf256"
    # the real script in its own process, default retries (5): stdout and stderr apart, as a user sees them
    proc = subprocess.run([sys.executable, str(REPO / "download_fdf256.py"), str(target), "--manifest", str(manifest),
                           "--workers", "1"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    source = source.format(port=port)
    assert proc.stdout.splitlines() == [f"{NAMES[0]}: failed - {source}: {cause}"] + [
        f"{name}: failed - {source}: {cause} (not tried again)" for name in NAMES[1:]]
    errors = proc.stderr.splitlines()
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert errors[0].startswith("Error: 5 of 5 file(s) failed") and cause not in errors[0]  # each cause said once
    assert f"The manifest says: {NOTE}" in errors[0]
    assert f"download_fdf256.py {target} --base-url URL [--mirror URL2 ...]" in errors[0]
    assert not (tmp_path / "data").exists()  # no empty work folder left behind


def test_tls_failure_is_named_and_not_retried(tmp_path):
    with LocalServer({}, max_seconds=60) as server:  # plain HTTP: a TLS handshake with it fails
        manifest = write_manifest(tmp_path / "m.json", server.url.replace("http://", "https://"))
        result = CliRunner().invoke(download_command, [str(tmp_path / "t"), "--manifest", str(manifest)])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if ": failed - " in line]
    assert len(lines) == len(NAMES) and all(": TLS failure (" in line for line in lines), result.output
    assert server.requests == []  # no HTTP request was ever understood, so none was retried either


@pytest.mark.parametrize("cause", ["name not resolved", "connection refused", "TLS failure"])
def test_an_unreachable_source_costs_no_retry_and_no_backoff(tmp_path, cause):
    """"Fails fast" without a clock: the first file's failure gives the source up, with no pause taken, and the
    other files do not try it again."""
    with LocalServer({}, max_seconds=60) as server:  # plain HTTP: a TLS handshake with it fails
        base = {"name not resolved": "https://fdf256-mirror.invalid/files",
                "connection refused": f"http://127.0.0.1:{refused_port()}/files",
                "TLS failure": server.url.replace("http://", "https://")}[cause]
        slept = []
        downloader = FileDownloader(make_session(1), retries=5, sleep=slept.append)
        report = download_dataset(tmp_path / "t", manifest=load_manifest(write_manifest(tmp_path / "m.json", base)),
                                  workers=1, downloader=downloader)
    assert not report.ok and slept == []
    (why,) = downloader.unreachable.values()
    assert why.startswith(cause)
    assert [f.detail.endswith("(not tried again)") for f in report.files] == [False] + [True] * (len(NAMES) - 1)
    assert server.requests == []


def test_a_refused_source_is_given_up_and_the_mirror_serves_every_file(tmp_path):
    dataset = make_dataset(tmp_path / "dataset", [f"owner{i}@N00" for i in range(6)])
    pack(dataset, tmp_path / "mirror")
    routes = {f"/m/{p.name}": p.read_bytes() for p in (tmp_path / "mirror").iterdir()}
    dead = f"http://127.0.0.1:{refused_port()}"
    slept = []
    downloader = FileDownloader(make_session(1), retries=5, sleep=slept.append)
    with LocalServer(routes, max_seconds=60) as good:
        report = download_dataset(tmp_path / "copy", manifest=load_manifest(tmp_path / "mirror" / "manifest.json"),
                                  base_url=dead, mirrors=(good.url + "/m",), workers=1, downloader=downloader)
    assert report.ok and {f.status for f in report.files} == {"downloaded"}
    assert {f.detail for f in report.files} == {f"{good.url}/m/{f.name}" for f in report.files}
    assert downloader.unreachable == {dead: "connection refused"}
    assert slept == []  # given up at once: no backoff spent on a port that refuses


def test_existing_target_folder_is_kept_but_nothing_is_added_to_it(tmp_path):
    target = tmp_path / "mine"
    target.mkdir()
    manifest = write_manifest(tmp_path / "m.json", f"http://127.0.0.1:{refused_port()}")
    result = CliRunner().invoke(download_command, [str(target), "--manifest", str(manifest)])
    assert result.exit_code == 1 and target.is_dir() and list(target.iterdir()) == []


def test_dry_run_sizes_come_from_the_manifest_or_a_head_request_else_size_unknown(tmp_path):
    bodies = {"cc-by-2.zip": b"x" * 1234, "cc-by-nc-2.zip": b"y" * 99}  # metainfo's size is in the manifest
    with LocalServer({f"/f/{n}": b for n, b in bodies.items()}, max_seconds=60) as server:
        manifest = write_manifest(tmp_path / "m.json", server.url + "/f", sizes={"metainfo.zip": 5_000_000})
        result = CliRunner().invoke(download_command, [str(tmp_path / "t"), "--manifest", str(manifest),
                                                       "--dry-run"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("metainfo.zip (5,000,000 bytes): planned - ")
    assert lines[1].startswith("cc-by-2.zip (1,234 bytes): planned - ")
    assert lines[2].startswith("cc-by-nc-2.zip (99 bytes): planned - ")
    for line in lines[3:5]:  # the server has no such file: HEAD says 404
        assert " (size unknown): planned - " in line and line.endswith(": HTTP 404)"), line
    assert lines[5] == "5 file(s), 5,001,333 bytes + 2 file(s) of unknown size"
    assert {p for p, _ in server.requests} == {f"/f/{n}" for n in NAMES[1:]}  # none asked for a known size
    assert not (tmp_path / "t").exists()


def test_dry_run_with_the_host_unreachable_says_size_unknown_and_why(tmp_path):
    manifest = write_manifest(tmp_path / "m.json", "https://fdf256-mirror.invalid/files")
    result = CliRunner().invoke(download_command, [str(tmp_path / "t"), "--manifest", str(manifest), "--dry-run"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert all(line.endswith("(HEAD: https://fdf256-mirror.invalid: name not resolved)") for line in lines[:5])
    assert lines[5] == "5 file(s), 0 bytes + 5 file(s) of unknown size"
