"""Removal is final under every fault: each durable filesystem operation of `remove`, a merge, a shard purge and
`pack` is a kill point (counted in a dry run, not sampled: see tests/killpoints.py). At each, the real command is
SIGKILLed; then the next commands a user would run are run, and:

* right after the kill, every split is there and consistent (readers see the old dataset or the new one);
* after the next command, no byte of the removed owner's faces is anywhere under the dataset (every file hashed,
  shards, hidden and staging folders included, and every member of every zip), no staging folder, swapped-out
  folder, temp file or journal is left, and every split is consistent;
* at the end, the dataset holds the same bytes as after the same commands run without a kill (blocklist comments,
  ledger ids and dates aside: they name when, not what).
"""

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner

from fdf_build.cli.main import cli
from fdf_build.dataset.layout import load_metainfo, verify_dataset
from fdf_build.demo import demo_photos
from fdf_build.localserver import LocalServer
from fdf_build.lock import LOCK
from fdf_build.sources.metadata import format_line
from fdf_build.sources.synthetic import synthetic_photo

from .killpoints import Zygote

# bea (train) is the owner removed; dan's faces go to val, so both splits change or stay
PHOTOS = [("ann@N00", "whitehouse_obama_biden.jpg"), ("bea@N01", "pexels_tennis_player.jpg"),
          ("dan@N03", "codait_luciano.jpg")]
REMOVED = "bea@N01"
BUILD = ["--val-fraction", "0.5", "--shard-size", "2", "--keypoints", "none", "--workers", "2",
         "--crawl-date", "2026-01-01"]
#: kill points enumerated per command, filled as the tests run (printed by the last test, quoted in the docs)
COUNTS: dict = {}


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    """The datasets each scenario starts from, all from one real build of three photos of three owners:
    ``built`` (bea in the splits and shards), ``blocked`` (bea left out of the splits by a grown --blocklist, her
    faces still in the shards: what a removal then only purges), ``removed`` (bea removed), and bea's face bytes."""
    base = tmp_path_factory.mktemp("killpoints")
    data = demo_photos()
    photos = [synthetic_photo(i, nsid=nsid, license="by") for i, (nsid, _) in enumerate(PHOTOS)]
    routes = {urlsplit(p.download_url).path: data[name] for p, (_, name) in zip(photos, PHOTOS)}
    tsv = base / "yfcc.tsv"
    tsv.write_text("".join(format_line(p) + "\n" for p in photos))
    blocklist, grown = base / "blocklist.txt", base / "grown.txt"
    blocklist.write_text("# nobody\n")
    grown.write_text(f"# then bea\n{REMOVED}\n")
    built = base / "built"
    with LocalServer(routes, max_seconds=120) as server:
        result = CliRunner().invoke(cli, ["build", str(tsv), "--out", str(built), "--base-url", server.url,
                                          "--blocklist", str(blocklist), *BUILD])
    assert result.exit_code == 0, result.output
    faces = {(built / s / "images" / f"{k}.png").read_bytes() for s in ("train", "val")
             for k, m in load_metainfo(built / s).items() if m["user_nsid"] == REMOVED}
    assert faces and load_metainfo(built / "val")
    blocked = shutil.copytree(built, base / "blocked")
    result = CliRunner().invoke(cli, ["build", str(tsv), "--out", str(blocked), "--blocklist", str(grown), *BUILD])
    assert result.exit_code == 0 and REMOVED not in (blocked / "train" / "fdf_metainfo.json").read_text(), result.output
    removed = shutil.copytree(built, base / "removed")
    assert CliRunner().invoke(cli, ["remove", str(removed), "--user-nsid", REMOVED]).exit_code == 0
    return {"built": built, "blocked": blocked, "removed": removed, "faces": faces, "tsv": tsv,
            "blocklist": blocklist}


@pytest.fixture
def scratch(tmp_path):
    """Where the copies are killed: in memory where the machine has /dev/shm (fsync costs nothing there, and each
    point's copy is deleted after it), else the test's own folder."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(prefix="fdf-killpoints-", dir=shm))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def zygote(tmp_path_factory):
    z = Zygote(tmp_path_factory.mktemp("zygote"))
    yield z
    z.close()


def scenario(name: str, bases: dict, d: Path, m: Path) -> tuple[str, list, list]:
    """(base dataset, the command killed, the commands a user runs next), for dataset ``d`` and mirror ``m``."""
    remove = ["remove", d, "--user-nsid", REMOVED]
    build = ["build", bases["tsv"], "--out", d, "--blocklist", bases["blocklist"], *BUILD]
    pack = ["pack", d, "--out", m]
    return {
        "remove": ("built", remove, [remove]),
        # a merge killed, then the removal the owner asked for, then the build resumed
        "merge": ("built", build, [remove, build]),
        "purge": ("blocked", remove, [remove]),
        "pack": ("removed", pack, [pack]),
    }[name]


def hashes(path: Path) -> set[bytes]:
    """The sha256 of a file and, for a zip, of each of its members."""
    data = path.read_bytes()
    found = {hashlib.sha256(data).digest()}
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            found |= {hashlib.sha256(z.read(info)).digest() for info in z.infolist()}
    return found


def leftovers(root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob("*")
            if p.name.startswith(".staging-") or p.name.endswith(".old") or p.name == ".remove-journal.json"
            or (p.name.endswith(".tmp") and ".index." not in p.name)]


def normalized(root: Path) -> dict:
    """Every file's bytes, but the lock's note and the search index (caches), blocklist comments and the ledger's
    removal ids and dates."""
    out = {}
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.name == LOCK or ".index" in p.name:
            continue
        data = p.read_bytes()
        if p.name == "blocklist.txt":
            data = b"\n".join(line for line in data.splitlines() if not line.startswith(b"#"))
        elif p.name == "removed.jsonl":
            data = json.dumps([{k: v for k, v in json.loads(line).items() if k not in ("removal", "date")}
                               for line in data.splitlines()]).encode()
        out[str(p.relative_to(root))] = data
    return out


def differences(got: dict, expected: dict) -> list:
    """(file, bytes now, bytes expected) of each file that differs, for the failure message."""
    return [(f"{root}/{path}", got[root].get(path, b"")[:300], expected[root].get(path, b"")[:300])
            for root in expected for path in sorted(set(got[root]) | set(expected[root]))
            if got[root].get(path) != expected[root].get(path)]


def run_ok(zygote, argv, cwd):
    killed, code, ops, output = zygote.run(argv, cwd)
    assert not killed and code == 0, output
    return ops


@pytest.mark.parametrize("name", ["remove", "merge", "purge", "pack"])
def test_every_kill_point_is_finished_or_rolled_back_by_the_next_command(name, bases, zygote, scratch):
    tmp_path = scratch
    removed_faces = {hashlib.sha256(b).digest() for b in bases["faces"]}

    def fresh(tag: str) -> tuple[Path, Path, str, list, list]:
        d, m = tmp_path / tag / "dataset", tmp_path / tag / "mirror"
        base, killed, after = scenario(name, bases, d, m)
        shutil.copytree(bases[base], d)
        if name == "pack":  # a mirror packed before: the kill lands while its files are replaced
            run_ok(zygote, killed, tmp_path)
        return d, m, killed, after

    d, m, command, after = fresh("reference")
    ops = run_ok(zygote, command, tmp_path)  # the dry run: every durable operation, in order
    for argv in after:
        run_ok(zygote, argv, tmp_path)
    reference = {"dataset": normalized(d), "mirror": normalized(m) if m.exists() else {}}
    COUNTS[name] = {"points": len(ops), **{op: ops.count(op) for op in sorted(set(ops))}}
    assert len(ops) >= 5, ops
    shutil.rmtree(tmp_path / "reference")

    for point in range(1, len(ops) + 1):
        d, m, command, after = fresh("run")
        killed, code, _, output = zygote.run(command, tmp_path, kill_at=point)
        assert killed, f"kill point {point} of {len(ops)} ({ops[point - 1]}) not reached: {output}"
        where = f"{name}, killed before operation {point} of {len(ops)} ({ops[point - 1]})"
        assert {s for s, problems in verify_dataset(d).items() if not problems} == {"train", "val"}, where
        for number, argv in enumerate(after):
            run_ok(zygote, argv, tmp_path)
            if number == 0:
                everything = [p for root in (d, m) if root.exists() for p in root.rglob("*") if p.is_file()]
                holding = [str(p) for p in everything if hashes(p) & removed_faces]
                assert holding == [] and leftovers(d) == [] and (not m.exists() or leftovers(m) == []), where
                assert verify_dataset(d) == {"train": [], "val": []}, where
        final = {"dataset": normalized(d), "mirror": normalized(m) if m.exists() else {}}
        assert final == reference, (where, differences(final, reference))
        shutil.rmtree(tmp_path / "run")


def test_the_kill_points_counted(capsys):
    """Prints what the tests above enumerated (run with -s to see it); the docs quote these counts."""
    with capsys.disabled():
        for name, counts in COUNTS.items():
            print(f"\nkill points of {name}: {counts}")
