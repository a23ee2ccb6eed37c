"""The commands as a user runs them: the console scripts that ``pip install`` put beside this interpreter, and the
two scripts run from the repository root.

Tests that call the library or ``python -m fdf_build`` still pass when an entry point in setup.cfg names a module
that does not exist; these do not."""

import json
import shutil

import pytest

from fdf_build.dataset.metainfo import read_metainfo
from fdf_build.demo import DEMO_VAL_OWNERS
from fdf_build.localserver import LocalServer

from .installed import BIN, DOWNLOAD, FDF_BUILD, SEARCH, run


def test_installed_fdf_build_script_loads_and_lists_its_commands():
    script = BIN / "fdf-build"
    assert script.exists(), f"{script} is missing: install the project (pip install -e .) into this interpreter"
    result = run(FDF_BUILD, "--help")
    assert result.returncode == 0, result.stderr
    for command in ("build", "demo", "scan", "remove", "serve", "download", "search"):
        assert f"  {command} " in result.stdout, result.stdout


@pytest.mark.parametrize("script,says,option", [(DOWNLOAD, "Download a published FDF256 copy", "--manifest"),
                                                (SEARCH, "Find every face of a Flickr user", "--user_nsid")],
                         ids=["download_fdf256.py", "search_username.py"])
def test_the_two_scripts_load_and_show_their_options(script, says, option):
    result = run(script, "--help")
    assert result.returncode == 0, result.stderr
    assert script[1] in result.stdout and says in result.stdout and option in result.stdout, result.stdout


def faces_by_photo(root) -> dict:
    return {(split, r.photo_id, tuple(r.original_bounding_box)) for split in ("train", "val")
            for r in read_metainfo(root / split).values()}


def test_a_real_build_fetches_from_the_demo_server(demo_server, tmp_path):
    """`fdf-build demo --serve` keeps its photo server up: a build of its metadata file against it, run as the
    user types it, makes the demo's dataset again."""
    assert demo_server.metadata.is_file() and demo_server.url.startswith("http://127.0.0.1:")
    result = run(FDF_BUILD, "build", demo_server.metadata, "--out", tmp_path / "rebuild", "--base-url", demo_server.url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "photos: 10 tried, 9 fetched, 1 removed from Flickr" in result.stdout
    assert faces_by_photo(tmp_path / "rebuild") == faces_by_photo(demo_server.out)
    assert result.stderr == ""  # redirected, as in a log: no progress-bar fragments, no native library chatter


def test_attributes_redirected_writes_its_summary_and_nothing_else(demo_server, tmp_path):
    """The attribute models' native libraries (LiteRT's "Created TensorFlow Lite XNNPACK delegate") and the
    progress bars stay out of a log."""
    copy = shutil.copytree(demo_server.out, tmp_path / "demo", symlinks=True)
    result = run(FDF_BUILD, "attributes", copy)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "attributes: train: 8 faces, val: 3 faces\n" and result.stderr == ""


def test_search_username_finds_an_owner_however_the_nsid_is_cased(demo_server):
    owner = DEMO_VAL_OWNERS["codait_luciano.jpg"]  # 90000362@N00
    typed = owner.replace("@N", "@n")
    found = run(SEARCH, demo_server.out, f"--user_nsid={typed}", "--json")
    assert found.returncode == 0, found.stderr
    matches = json.loads(found.stdout)
    assert matches and {m["user_nsid"] for m in matches} == {owner}
    assert matches == json.loads(run(SEARCH, demo_server.out, f"--user_nsid={owner}", "--json").stdout)


def test_download_fdf256_downloads_a_mirror_then_verifies_it_without_a_url(demo_server, tmp_path):
    """The demo packed as a mirror, downloaded by the script; --verify-only then fetches nothing, so the manifest's
    relative URLs (as pack writes them) need no --base-url."""
    mirror, copy = tmp_path / "mirror", tmp_path / "copy"
    packed = run(FDF_BUILD, "pack", demo_server.out, "--out", mirror)
    assert packed.returncode == 0, packed.stderr
    manifest = mirror / "manifest.json"
    with LocalServer({f"/m/{p.name}": p.read_bytes() for p in mirror.iterdir()}, max_seconds=120) as server:
        fetched = run(DOWNLOAD, copy, "--manifest", manifest, "--base-url", server.url + "/m")
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    assert faces_by_photo(copy) == faces_by_photo(demo_server.out)
    result = run(DOWNLOAD, copy, "--manifest", manifest, "--verify-only")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{copy}: OK" in result.stdout
    (copy / "val" / "images" / "0.png").unlink()
    damaged = run(DOWNLOAD, copy, "--manifest", manifest, "--verify-only")
    assert damaged.returncode == 1 and "val/images: 1 image(s) missing" in damaged.stderr
