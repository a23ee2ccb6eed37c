"""The pipeline: the one place that wires select -> fetch -> decode -> detect -> keypoints -> filter -> crop -> write.

``run_build(config)`` streams eligible photos from the metadata, cuts them into
shards of ``shard_size`` photos, processes each shard on a thread pool
(fetching is I/O-bound; inference is bounded to one call per core), stages it,
and finally merges all shards into the FDF layout. Completed shards are
skipped on a re-run, so a killed build resumes where it stopped and ends with
the same bytes as an uninterrupted one.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import logging
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

from . import dedup, identity
from .card import write_card
from .config import BuildConfig, BuildError
from .dataset.layout import WORK_DIR
from .dataset.loaders import as_mapping, load_json, read_build_state
from .dataset.writer import ShardWriter, completed_stats, merge_shards, staged_records, write_geometry
from .errors import BadInput, DatasetError
from .files import write_json
from .models.stack import check_models, weights_files
from .privacy.index import index_dataset
from .privacy.removal import LiveRemovals, changing, removals
from .records import Photo, RunCounts, SkipReason
from .remote import RemoteOutput
from .shard import Progress, Stages, run_shard, run_shards_locally
from .sources.filters import Blocklist, Eligibility, resolve_licenses
from .sources.scan import Eligible, Scanner, ScanSummary
from .sources.stream import MetadataError, line_blocks

log = logging.getLogger(__name__)


@dataclass
class Summary(RunCounts):
    """What a build selected, fetched, kept and skipped (``OUT/stats.json``)."""

    RANKED = ("skipped",)
    selection: dict = field(default_factory=dict)
    skipped: Counter = field(default_factory=Counter)
    splits: Counter = field(default_factory=Counter)
    shards: Counter = field(default_factory=Counter)

    def add_shard(self, stats: dict) -> None:
        for key in ("photos", "faces", "skipped"):
            getattr(self, key).update(stats[key])


def select(config: BuildConfig, summary: ScanSummary, progress: Progress,
           blocklist: Optional[Blocklist] = None) -> Iterator[Eligible]:
    """Eligible lines in file order, at most ``config.limit``; ``summary`` counts everything read.

    Each is decoded into its :class:`Photo` only if its shard is built (:meth:`Eligible.photo`).

    ``blocklist``: the one a resumed build started with, if not ``config.blocklist`` (see :func:`_prepare_work_dir`).
    """
    eligibility = Eligibility(resolve_licenses(config.licenses),
                              Blocklist.from_file(config.blocklist) if blocklist is None else blocklist)
    scanner, taken = Scanner(eligibility, summary), 0
    if config.limit == 0:
        return
    try:
        with line_blocks(config.metadata, on_bytes=lambda n: progress("bytes", n)) as blocks:
            for block in blocks:
                eligible = scanner.count(block, None if config.limit is None else config.limit - taken)
                yield from eligible
                taken += len(eligible)
                if taken == config.limit:
                    return
    except MetadataError as e:
        e.summary = summary
        raise


def _prepare_work_dir(config: BuildConfig) -> tuple[Path, str, Blocklist]:
    """Create or reopen ``OUT/.work``; refuse to mix shards of builds with other settings or inputs.

    Returns the work directory, the build's crawl date and the blocklist the build started with:
    that one decides which photos make up each shard, so a blocklist grown since never shifts
    photos between finished and unfinished shards (the new entries are filtered out later).
    A blocklist may only grow: ``build.json`` keeps the latest one a run used, and a run whose
    blocklist lacks any of its entries is refused, as shards built without those photos would be
    missing them.
    """
    work = Path(config.out) / WORK_DIR
    state_path = work / "build.json"
    current = identity.build_identity(config.output_settings(), config.metadata,
                                      Blocklist.from_file(config.blocklist), weights_files(config))
    state = read_build_state(work)
    if state is None:
        work.mkdir(parents=True, exist_ok=True)
        crawl_date = config.crawl_date or _dt.datetime.now(_dt.timezone.utc).date().isoformat()
        write_json(state_path, {"identity": current,
                                "blocklist": current["blocklist"], "crawl_date": crawl_date,
                                "config": config.to_json()})
        return work, crawl_date, Blocklist.from_file(config.blocklist)
    started = state.get("identity")
    if started is None:
        changed = ["it was started by an older fdf_build, which did not record its inputs"]
    else:
        changed = identity.differences({**started, "blocklist": state["blocklist"]}, current)
    if changed:
        raise BuildError(f"{config.out} holds a build with other settings or inputs ({'; '.join(changed)}); "
                         "use a new --out, or --restart to discard its shards")
    if current["metadata"]["name"] == identity.STDIN:
        log.warning("resuming a build read from standard input: it cannot be checked to be the same metadata")
    if state.get("blocklist") != current["blocklist"]:
        write_json(state_path, {**state, "blocklist": current["blocklist"]})
    return work, config.crawl_date or state["crawl_date"], identity.blocklist_from_entries(started["blocklist"])


def run_build(config: BuildConfig, progress: Optional[Progress] = None, *, restart: bool = False) -> Summary:
    """Build (or resume) the dataset ``config.out``, holding its lock from the first shard to the merge;
    ``restart`` discards the shards of an earlier run first."""
    check_models(config)
    with changing(Path(config.out), "fdf-build build"):
        if restart:  # forget the shards of an earlier run; the finished splits stay until the new merge
            shutil.rmtree(Path(config.out) / WORK_DIR, ignore_errors=True)
        return _build_locked(config, progress or (lambda stage, n: None))


def _chunks(items: Iterator[Eligible], size: int) -> Iterator[list[Eligible]]:
    while chunk := list(itertools.islice(items, size)):
        yield chunk


def _build_locked(config: BuildConfig, progress: Progress) -> Summary:
    remote = RemoteOutput(config.out_url, config.out) if config.out_url else None
    if remote:
        remote.pull_state()
    work, crawl_date, started_with = _prepare_work_dir(config)
    if remote:
        remote.push_state()
    summary = Summary()
    scan_summary = ScanSummary()
    shard_dirs = []
    # never fetched, though the shards keep the photos the build started with: blocklisted since it started, or
    # removed from the dataset (a --restart over a removal must not fetch and cut the removed faces again);
    # read again as the build goes, so a removal made meanwhile stops it taking that owner's photos
    not_fetched = LiveRemovals(Path(config.out), config.blocklist)

    def pending() -> Iterator[tuple[list[Photo], Path]]:
        """Shards still to build, in order; completed ones are counted and skipped on the way."""
        chunks = _chunks(select(config, scan_summary, progress, started_with), config.shard_size)
        for number, lines in enumerate(chunks):
            shard_dir = work / f"shard_{number:05d}"
            shard_dirs.append(shard_dir)
            stats = completed_stats(shard_dir) or (remote.shard_stats(shard_dir) if remote else None)
            if stats is None:
                photos = [line.photo() for line in lines]
                allowed = [p for p in photos if p not in not_fetched]
                if len(allowed) < len(photos):
                    summary.skipped[SkipReason.BLOCKLISTED.value] += len(photos) - len(allowed)
                    progress("photos", len(photos) - len(allowed))
                yield allowed, shard_dir
            else:
                summary.shards["resumed"] += 1
                summary.add_shard(stats)
                progress("photos", len(lines))

    if config.executor == "ray":
        from .distributed import run_shards_ray as run_shards
    else:
        run_shards = run_shards_locally
    for stats in run_shards(config, pending(), crawl_date, progress):
        summary.shards["built"] += 1
        summary.add_shard(stats)
    summary.selection = scan_summary.to_dict()
    if remote:
        for shard_dir in shard_dirs:
            remote.fetch_shard(shard_dir)
    _finish(config, summary, shard_dirs)
    if remote:
        remote.publish_dataset()
    return summary


def _finish(config: BuildConfig, summary: Summary, shard_dirs: list[Path]) -> Summary:
    """Merge the shards into the FDF layout, index it for search, and save the summary.

    The merge leaves out every face the build's blocklist or the dataset's removals (its ``blocklist.txt``
    and ``removed.jsonl``) name now, whenever its shard was built: a removal is final, and a blocklist
    that grew since the shards were built needs no ``--restart``. With ``--dedup`` it leaves out all but one
    face of each group of near-duplicates (:func:`near_duplicate_copies`).
    """
    out = Path(config.out)
    with changing(out, "fdf-build merge"):  # held since the build began: taken again, it settles nothing new
        blocked = never_again(config)
        copies = set()
        if config.dedup:
            copies, summary.faces["near_duplicate_groups"] = near_duplicate_copies(shard_dirs, blocked)
        left_out = Counter()

        def exclude(record) -> bool:
            reason = ("removed_or_blocklisted" if blocked.blocks(record.user_nsid, record.photo_id) else
                      "near_duplicates" if (record.yfcc100m_line_idx, record.face_index) in copies else None)
            left_out[reason] += 1
            return reason is not None

        try:
            summary.splits = merge_shards(shard_dirs, out, val_fraction=config.val_fraction, exclude=exclude)
        except FileNotFoundError as e:  # a shard's face deleted by hand: that shard cannot be merged
            raise DatasetError(f"{e.filename}: missing, so its shard cannot be merged; delete that shard's folder "
                               "and run the build again to redo it") from None
        del left_out[None]
        summary.faces.update(left_out)
        write_geometry(out, config.geometry)
        index_dataset(out)
        write_json(out / "stats.json", summary.to_dict())
        write_card(out)
    return summary


def near_duplicate_copies(shard_dirs: list[Path], blocked: Blocklist) -> tuple[set[tuple[int, int]], int]:
    """The staged faces ``--dedup`` leaves out, as (YFCC line, face index), and the number of groups.

    Of each group of near-identical faces (:func:`fdf_build.dedup.groups`, blocked faces not counted) the face
    of the earliest uploaded photo stays (then the lowest YFCC line and face index): the likeliest original,
    credited to its likeliest author, and one face cannot be in both splits.
    """
    keys, hashes = [], []
    for record in staged_records(shard_dirs):
        if not blocked.blocks(record.user_nsid, record.photo_id):
            keys.append((record.date_uploaded or "~", record.yfcc100m_line_idx, record.face_index))
            hashes.append(record.phash)
    found = dedup.groups(dedup.to_uint64(hashes))
    return {keys[i][1:] for i in dedup.left_out(found, keys.__getitem__)}, len(found)


def never_again(config: BuildConfig) -> Blocklist:
    """Owners and photos that must not be in this build's output: its ``--blocklist`` and its dataset's removals."""
    return Blocklist.from_file(config.blocklist) | removals(Path(config.out))


#: Outcomes that may pass on a later try (internal errors: once the bug is fixed); ``retry-failed`` redoes only these.
TRANSIENT = tuple(r.value for r in (SkipReason.HTTP_SERVER_ERROR, SkipReason.HTTP_RATE_LIMITED,
                                     SkipReason.HTTP_TIMEOUT, SkipReason.CONNECTION_ERROR, SkipReason.INTERNAL_ERROR))


def load_saved_config(out: Path, **overrides) -> BuildConfig:
    """The settings a build in ``out`` was made with (``OUT/.work/build.json``), with network overrides."""
    state = read_build_state(Path(out) / WORK_DIR)
    if state is None:
        raise BadInput(f"{out} holds no build (no {Path(out) / WORK_DIR / 'build.json'})")
    data = dict(state["config"])
    data["out"] = str(out)  # where the build is now: it may have been moved or copied since
    data.update({k: v for k, v in overrides.items() if v is not None})
    return BuildConfig.from_json(data)


def retry_failed(config: BuildConfig, progress: Optional[Progress] = None) -> Summary:
    """Re-process the photos of a finished build that failed for transient reasons, then merge again."""
    check_models(config)
    with changing(Path(config.out), "fdf-build retry-failed"):
        return _retry_locked(config, progress or (lambda stage, n: None))


def _retry_locked(config: BuildConfig, progress: Progress) -> Summary:
    work, crawl_date, _ = _prepare_work_dir(config)
    previous = Path(config.out) / "stats.json"
    if not previous.is_file():
        raise BuildError(f"the build in {config.out} has not finished: re-run `fdf-build build` to resume it first")
    stages = Stages.from_config(config)
    summary = Summary(selection=dict(as_mapping(load_json(previous, "a build's stats"), previous,
                                                "a build's stats").get("selection") or {}))
    shard_dirs = sorted(work.glob("shard_*"))
    blocked = LiveRemovals(Path(config.out), config.blocklist)  # never fetch a removed owner's photo again
    for shard_dir in shard_dirs:
        writer = ShardWriter(shard_dir, detector=stages.detector.name, crawl_date=crawl_date, reopen=True)
        photos = writer.take_photos(TRANSIENT, unless=blocked.__contains__)
        if photos:
            summary.shards["retried"] += 1
            summary.photos["retried"] += len(photos)
            stats = run_shard(stages, photos, writer, progress)
        else:
            stats = completed_stats(shard_dir)
        summary.add_shard(stats)
    return _finish(config, summary, shard_dirs)


