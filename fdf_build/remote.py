"""A build whose ``--out`` is an object store URL (``s3://bucket/fdf``...), for clusters without a shared filesystem.

Each shard is built in a folder local to whoever builds it (this process, or a Ray actor on any node) and
then stored as one object, ``OUT/.work/shard_NNNNN.tar``, its stats object written after it: a shard is
complete when ``shard_NNNNN_stats.json`` is there, so a build resumed on another machine skips it. The
driver keeps the build's state (``.work/build.json``), fetches the shards into a local folder, merges them
there exactly as a local build does, and uploads the dataset: the FDF layout under ``OUT/``, files
replaced one by one (an object store has no folder to swap), faces no longer in the dataset deleted, and
``stats.json`` deleted first and written last, so a reader that finds it finds the whole dataset.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
import tempfile
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Iterator, Optional
from urllib.parse import urlsplit

from .dataset.layout import WORK_DIR
from .dataset.writer import STATS_NAME, completed_stats
from .files import new_staging_dir, swap_in, tar_info
from .privacy.index import INDEX_SUFFIX
from .privacy.removal import BLOCKLIST, LEDGER
from .split import SPLITS
from .storage import Storage

STATE = f"{WORK_DIR}/build.json"
#: what the driver downloads before a build resumes: its state, and the dataset's removals (never built again)
_PULLED = (STATE, LEDGER, BLOCKLIST)
STATS = "stats.json"


def default_local_dir(url: str) -> Path:
    """Where the driver works for ``url`` unless told: a folder in the system's temp dir, one per URL, named as
    the URL's last part (``s3://bucket/fdf256`` -> ``.../fdf256``: the dataset card takes its title from it)."""
    parts = urlsplit(url)
    name = PurePosixPath(parts.path).name or parts.netloc
    return Path(tempfile.gettempdir()) / "fdf_build-out" / hashlib.sha256(url.encode()).hexdigest()[:16] / name


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

    def publish_dataset(self) -> None:
        """Upload the merged dataset; ``stats.json``, its completion mark, is removed first and written last."""
        self.storage.remove([STATS] if self.storage.exists(STATS) else [])
        local = {p.relative_to(self.local).as_posix(): p for p in sorted(self.local.rglob("*")) if p.is_file()}
        wanted = {name: path for name, path in local.items()
                  if not name.startswith((f"{WORK_DIR}/", ".")) and not name.endswith(INDEX_SUFFIX) and name != STATS}
        self.storage.upload_many(wanted)
        stale = [n for split in SPLITS for n in self.storage.list(split) if n not in wanted]
        self.storage.remove(stale)
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
