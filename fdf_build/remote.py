"""A build whose ``--out`` is an object store URL (``s3://bucket/fdf``...), for clusters without a shared filesystem.

Each shard is built in a folder local to whoever builds it (this process, or a Ray actor on any node) and
then stored as one object, ``OUT/.work/shard_NNNNN.tar``, its stats object written after it: a shard is
complete when ``shard_NNNNN_stats.json`` is there, so a build resumed on another machine skips it. The
driver keeps the build's state (``.work/build.json``), fetches the shards into a local folder, merges them
there exactly as a local build does, and uploads the dataset: the FDF layout under ``OUT/``, files
replaced one by one (an object store has no folder to swap), faces no longer in the dataset deleted, and
``stats.json`` deleted first and written last, so a reader that finds it finds the whole dataset.

A command that changes a stored dataset (``fdf-build remove s3://...``) works the same way on a copy:
:func:`stored_dataset` fetches the dataset and its complete shards, the command runs on the copy as on any local
dataset, and the shards it changed and then the dataset are stored again.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
import tempfile
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator, Optional
from urllib.parse import urlsplit

from .dataset.layout import METAINFO, WORK_DIR
from .dataset.writer import STATS_NAME, completed_stats
from .errors import BadInput
from .files import new_staging_dir, swap_in, tar_info
from .privacy.index import INDEX_SUFFIX
from .privacy.removal import BLOCKLIST, LEDGER
from .split import SPLITS
from .storage import Storage

STATE = f"{WORK_DIR}/build.json"
#: what the driver downloads before a build resumes: its state, and the dataset's removals (never built again)
_PULLED = (STATE, LEDGER, BLOCKLIST)
STATS = "stats.json"


def dataset_name(url: str) -> str:
    """The URL's last part (``s3://bucket/fdf256`` -> ``fdf256``): a local copy is named so, as the dataset card
    takes its title from its folder's name."""
    parts = urlsplit(url)
    return PurePosixPath(parts.path).name or parts.netloc


def default_local_dir(url: str) -> Path:
    """Where the driver works for ``url`` unless told: a folder in the system's temp dir, one per URL."""
    return Path(tempfile.gettempdir()) / "fdf_build-out" / hashlib.sha256(url.encode()).hexdigest()[:16] / \
        dataset_name(url)


class RemoteOutput:
    """The object store side of a build: ``url`` holds the shards and the dataset, ``local`` the driver's copy."""

    def __init__(self, url: str, local: Path):
        self.storage = Storage(url)
        self.url, self.local = self.storage.url, Path(local)

    def pull_state(self) -> None:
        """Fetch the build's state and the dataset's removals, where the store has them."""
        for name in _PULLED:
            if self.storage.exists(name):
                self.storage.download(name, self.local / name)

    def push_state(self) -> None:
        self.storage.upload(self.local / STATE, STATE)

    def discard_work(self) -> None:
        """``--restart``: forget the stored shards too."""
        self.storage.remove(self.storage.list(WORK_DIR))

    @staticmethod
    def _names(shard_dir: Path) -> tuple[str, str]:
        return f"{WORK_DIR}/{shard_dir.name}.tar", f"{WORK_DIR}/{shard_dir.name}_{STATS_NAME.lstrip('_')}"

    def shard_stats(self, shard_dir: Path) -> Optional[dict]:
        """The stats of a shard the store holds complete, else None."""
        _, stats = self._names(shard_dir)
        return json.loads(self.storage.read_bytes(stats)) if self.storage.exists(stats) else None

    def publish_shard(self, shard_dir: Path) -> None:
        """Store a completed shard: its files as one tar object, then its stats (the marker) after it."""
        tar_name, stats_name = self._names(shard_dir)
        with self.storage.open_write(tar_name) as sink, \
                tarfile.open(fileobj=sink, mode="w|", format=tarfile.USTAR_FORMAT, bufsize=1 << 20) as tar:
            for path in sorted(p for p in shard_dir.rglob("*") if p.is_file() and p.name != STATS_NAME):
                with open(path, "rb") as f:  # the same shard, wherever and whenever built, is the same object
                    tar.addfile(tar_info(path.relative_to(shard_dir).as_posix(), path.stat().st_size), f)
        self.storage.write_bytes(stats_name, (shard_dir / STATS_NAME).read_bytes())

    def fetch_shard(self, shard_dir: Path) -> None:
        """Make the local ``shard_dir`` a copy of the stored shard, unless it is one already."""
        if completed_stats(shard_dir) is not None:
            return
        tar_name, stats_name = self._names(shard_dir)
        staging = new_staging_dir(shard_dir.parent, f".{shard_dir.name}.")
        try:
            self.storage.download(tar_name, staging / "shard.tar")
            with tarfile.open(staging / "shard.tar") as tar:
                tar.extractall(staging / "shard", filter="data")
            (staging / "shard" / STATS_NAME).write_bytes(self.storage.read_bytes(stats_name))
            swap_in(staging / "shard", shard_dir)
        finally:
            shutil.rmtree(staging)

    def dataset_files(self) -> dict[str, Path]:
        """The local copy's files that make the stored dataset, by name: not the build's work, hidden files (locks,
        journals), search indexes or ``stats.json``."""
        local = {p.relative_to(self.local).as_posix(): p for p in sorted(self.local.rglob("*")) if p.is_file()}
        return {name: path for name, path in local.items()
                if not name.startswith((f"{WORK_DIR}/", ".")) and not name.endswith(INDEX_SUFFIX) and name != STATS}

    def publish_dataset(self) -> None:
        """Upload the merged dataset; ``stats.json``, its completion mark, is removed first and written last
        (where the local copy has one: a copy of a store whose last upload was cut off has none)."""
        self.storage.remove([STATS] if self.storage.exists(STATS) else [])
        wanted = self.dataset_files()
        self.storage.upload_many(wanted)
        stale = [n for split in SPLITS for n in self.storage.list(split) if n not in wanted]
        self.storage.remove(stale)
        if (self.local / STATS).is_file():
            self.storage.upload(self.local / STATS, STATS)


@contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A folder of this machine's own for one shard, removed afterwards."""
    parent = Path(tempfile.gettempdir())
    folder = new_staging_dir(parent, prefix)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _listing(paths: Iterable[Path]) -> dict[Path, tuple[int, int]]:
    """Size and modification time of each file among ``paths``: what tells that a command changed one."""
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in paths if p.is_file()}


@contextmanager
def stored_dataset(url: str) -> Iterator[Path]:
    """A local copy of the dataset stored at ``url``, its complete shards in ``.work/``, for a command that changes
    it as it changes a local dataset. When the block ends without an error, a changed blocklist is stored first
    (a build resumed meanwhile takes the blocked photos no more), then the shards it changed (a shard it deleted
    is deleted), then, if the command changed it, the dataset is published as a build publishes it; the copy is
    deleted in any case. A run cut off anywhere leaves the store holding the old or the new version of each shard
    and file, and the same command run again finishes the change from what the store holds. Shards stored without
    their stats (a build cut off between the two) hold faces no merge or removal has checked: they are deleted, and
    a resumed build makes them again."""
    scratch_dir = new_staging_dir(Path(tempfile.gettempdir()), "fdf_build-stored")
    out = RemoteOutput(url, scratch_dir / dataset_name(url))
    try:
        names = out.storage.list()
        if not any(n in (f"{split}/{METAINFO}" for split in SPLITS) for n in names):
            raise BadInput(f"{url}: holds no dataset (no train/{METAINFO} or val/{METAINFO})")
        out.storage.download_many({n: out.local / n for n in names if not n.startswith(f"{WORK_DIR}/")})
        stored = [out.local / n.removesuffix(".tar") for n in names
                  if PurePosixPath(n).parent == PurePosixPath(WORK_DIR) and n.endswith(".tar")]
        present = set(names)
        out.storage.remove(out._names(shard)[0] for shard in stored if out._names(shard)[1] not in present)
        shards = [shard for shard in stored if out._names(shard)[1] in present]
        (out.local / WORK_DIR).mkdir(parents=True, exist_ok=True)
        for shard in shards:
            out.fetch_shard(shard)
        before = {shard: _listing(shard.rglob("*")) for shard in shards}
        dataset_before, blocklist = _listing(out.dataset_files().values()), out.local / BLOCKLIST
        blocklist_before = _listing([blocklist])
        yield out.local
        if _listing([blocklist]) != blocklist_before:
            out.storage.upload(blocklist, BLOCKLIST)  # first, as a local removal blocks first: no build takes them
        for shard in shards:
            if not shard.is_dir():
                out.storage.remove(out._names(shard))
            elif _listing(shard.rglob("*")) != before[shard]:
                out.publish_shard(shard)
        if _listing(out.dataset_files().values()) != dataset_before or not (out.local / STATS).is_file():
            out.publish_dataset()
    finally:
        shutil.rmtree(scratch_dir, ignore_errors=True)
