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
import errno
import itertools
import json
import logging
import os
import shutil
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

from . import identity, metadata
from .config import BuildConfig
from .crop import cut_faces
from .decode import decode_image
from .detect import FaceDetector, make_detector
from .facefilter import large_faces, matched_faces
from .fetch import Fetcher, HostThrottle, RetryBudget, make_session
from .filters import Blocklist, Eligibility, resolve_licenses
from .keypoints import KeypointModel, make_keypoint_model
from .layout import WORK_DIR
from .records import FaceCrop, Malformed, Photo, Skip, SkipReason
from .scan import ScanSummary
from .writer import ShardWriter, completed_stats, merge_shards, write_geometry, write_json

log = logging.getLogger(__name__)

#: ``progress(stage, n)``: called with ``("bytes", n)`` while reading metadata,
#: ``("photos", 1)`` per processed photo and ``("faces", k)`` per kept face.
Progress = Callable[[str, int], None]


class BuildError(Exception):
    """A user-facing problem that stops a build before it starts (the CLI prints it as one line)."""


@dataclass
class Summary:
    selection: dict = field(default_factory=dict)
    photos: Counter = field(default_factory=Counter)
    faces: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    splits: Counter = field(default_factory=Counter)
    shards: Counter = field(default_factory=Counter)

    def add_shard(self, stats: dict) -> None:
        for key in ("photos", "faces", "skipped"):
            getattr(self, key).update(stats[key])

    def to_dict(self) -> dict:
        return {
            "selection": self.selection,
            "photos": dict(self.photos),
            "faces": dict(self.faces),
            "skipped": dict(self.skipped.most_common()),
            "splits": dict(self.splits),
            "shards": dict(self.shards),
        }


@dataclass
class Stages:
    """The configured per-photo stages, built once per build (models load here, not per photo)."""

    fetcher: Fetcher
    detector: FaceDetector
    keypoints: Optional[KeypointModel]
    config: BuildConfig
    inference_slots: threading.Semaphore

    @classmethod
    def from_config(cls, config: BuildConfig, *, cpus: Optional[int] = None) -> "Stages":
        """``cpus``: the cores this process may use for CPU inference (default: all of this machine's)."""
        cpus = cpus or os.cpu_count() or 1
        fetcher = make_fetcher(config)
        detector, keypoints = make_models(config, cpus=cpus)
        # CPU models get a slot per core; batching backends want every photo in flight inside inference at once
        slots = max(config.threads, config.batch_size) if config.reference_models else cpus
        return cls(fetcher, detector, keypoints, config, threading.Semaphore(slots))

    def process(self, photo: Photo, writer: ShardWriter) -> Counter:
        """Run one photo through every stage; staged faces go to ``writer``, the return value counts outcomes.

        An unexpected exception fails this photo alone, as an ``internal_error`` (traceback in the
        debug log); a :func:`systemic` one (disk full, out of memory) is raised, to stop the build.
        """
        c = self.config
        url = metadata.photo_url(photo, size=c.flickr_size, base_url=c.base_url)
        stats = Counter(tried=1)
        faces = _PhotoFaces()
        try:
            data = self.fetcher(url)
            if isinstance(data, Skip):
                skip = data
            else:
                stats["fetched"] += 1
                with self.inference_slots:
                    skip = self._analyse(photo, data, faces, stats)
            # staged only once every stage has passed, all at once: a failed photo leaves no face behind
            writer.add_faces(faces.crops)
        except Exception as e:
            if systemic(e):
                raise
            log.debug("photo %s (%s): internal error", photo.photo_id, url, exc_info=True)
            stats = Counter({k: v for k, v in stats.items() if k in ("tried", "fetched")})
            skip = Skip(SkipReason.INTERNAL_ERROR, f"{type(e).__name__}: {e}")
        if skip is None:
            writer.add_photo(photo, url, "ok", stats)
        else:
            stats[f"skip:{skip.reason.value}"] += 1
            writer.add_photo(photo, url, skip.reason.value, stats, skip.detail)
        return stats

    def _analyse(self, photo: Photo, data: bytes, writer: "_PhotoFaces", stats: Counter) -> Optional[Skip]:
        image = decode_image(data, max_pixels=self.config.max_pixels)
        if isinstance(image, Skip):
            return image
        faces = self.detector(image)
        if not faces:
            return Skip(SkipReason.NO_FACE)
        faces = large_faces(faces, self.config.min_face, stats)
        if isinstance(faces, Skip):
            return faces
        if self.keypoints is not None:
            faces = self.keypoints(image, faces)
        faces = matched_faces(faces, self.config.unmatched, self.detector.name, stats)
        if isinstance(faces, Skip):
            return faces
        stats.update(kept=len(faces))
        canonical_url = metadata.photo_url(photo, size=self.config.flickr_size)
        for face_crop in cut_faces(photo, image, faces, self.config.geometry, canonical_url):
            writer.add_face(face_crop)
        return None


def make_fetcher(config: BuildConfig) -> Fetcher:
    """The fetch stage a build runs with: its timeouts, retries, per-host cap, rate and retry budget."""
    return Fetcher(
        make_session(config.workers),
        timeout=config.timeout,
        retries=config.retries,
        max_retry_after=config.max_retry_after,
        per_host=config.per_host,
        max_bytes=config.max_bytes,
        throttle=HostThrottle(config.rate, max_pause=config.max_retry_after),
        budget=RetryBudget(config.retry_budget),
    )


class _PhotoFaces:
    """One photo's face crops, held until the photo has passed every stage."""

    def __init__(self):
        self.crops: list[FaceCrop] = []

    def add_face(self, crop: FaceCrop) -> None:
        self.crops.append(crop)


#: errno values that say the machine or the output directory is at fault, not the photo
_SYSTEMIC_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EMFILE, errno.ENFILE,
                    errno.EACCES, errno.EPERM, errno.ENOMEM}


def systemic(e: BaseException) -> bool:
    """Whether an exception would fail every photo after this one too, so the build must stop.

    A photo's stages work on bytes in memory and write only the output, so an
    OS error there (a full disk, a read-only or unwritable output, no file
    handles or memory left) is about the machine, never about the photo.
    """
    return isinstance(e, MemoryError) or (isinstance(e, OSError) and e.errno in _SYSTEMIC_ERRNOS)


def stopped(e: BaseException) -> BuildError:
    """The one line a build stopped by a systemic error ends with."""
    return BuildError(f"build stopped: {e}. Completed shards are kept: fix this and run the same command again "
                      "to resume.")


def check_models(config: BuildConfig) -> None:
    """Fail before any work when a reference backend cannot run: no torch, or weights not on disk."""
    if not config.reference_models:
        return
    try:
        from .reference import MissingWeights, find_weights
    except ImportError as e:
        raise BuildError(f"{', '.join(config.reference_models)} need the reference extra "
                         f"(pip install -e '.[reference]'): {e}") from None
    for model in config.reference_models:
        try:
            find_weights(model, config.weights_dir)
        except MissingWeights as e:
            raise BuildError(str(e)) from None


def make_models(config: BuildConfig, *, random_init: bool = False, cpus: int = 1):
    """The face detector and keypoint stage a config asks for; reference backends are batched.

    ``cpus``: CPU inferences that may run at once (MediaPipe makes that many graphs up front).
    A weights file that cannot be loaded is a :class:`BuildError` naming it.
    """
    from .reference import WeightsError

    try:
        return _make_models(config, random_init=random_init, cpus=cpus)
    except WeightsError as e:
        raise BuildError(str(e)) from None


def _make_models(config: BuildConfig, *, random_init: bool, cpus: int):
    if config.reference_models:
        from . import reference

        common = dict(weights_dir=config.weights_dir, device=config.device, fp16=config.fp16, random_init=random_init)
    if config.detector == "dsfd":
        detector = reference.BatchedDetector(
            reference.DSFDDetector(max_side=config.detect_max_side, pad_multiple=config.pad_multiple,
                                   score_threshold=config.detector_threshold, **common),
            config.batch_size)
    else:
        detector = make_detector(config.detector, score_threshold=config.detector_threshold,
                                 max_side=config.detect_max_side)
    if config.keypoints == "keypointrcnn":
        keypoints = reference.BatchedKeypoints(
            reference.KeypointRCNN(max_side=config.detect_max_side, **common), config.batch_size)
    else:
        keypoints = make_keypoint_model(config.keypoints, graphs=cpus)
    if config.landmarks:
        keypoints = reference.WithLandmarks68(
            keypoints, reference.BatchedLandmarks(reference.FaceAlignment68(**common), config.batch_size))
    return detector, keypoints


def select(config: BuildConfig, summary: ScanSummary, progress: Progress,
           blocklist: Optional[Blocklist] = None) -> Iterator[Photo]:
    """Eligible photos in file order, at most ``config.limit``; ``summary`` counts everything read.

    ``blocklist``: the one a resumed build started with, if not ``config.blocklist`` (see :func:`_prepare_work_dir`).
    """
    eligibility = Eligibility(resolve_licenses(config.licenses),
                              Blocklist.from_file(config.blocklist) if blocklist is None else blocklist)
    taken = 0
    with metadata.open_metadata(config.metadata, on_bytes=lambda n: progress("bytes", n)) as lines:
        for item in metadata.read_photos(lines):
            if config.limit is not None and taken >= config.limit:
                return
            reason = None if isinstance(item, Malformed) else eligibility(item)
            summary.add(item, reason)
            if isinstance(item, Photo) and reason is None:
                taken += 1
                yield item


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
                                      Blocklist.from_file(config.blocklist), _weights_files(config))
    if not state_path.exists():
        work.mkdir(parents=True, exist_ok=True)
        crawl_date = config.crawl_date or _dt.datetime.now(_dt.timezone.utc).date().isoformat()
        write_json(state_path, {"identity": current,
                                "blocklist": current["blocklist"], "crawl_date": crawl_date,
                                "config": config.to_json()})
        return work, crawl_date, Blocklist.from_file(config.blocklist)
    state = json.loads(state_path.read_text())
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


def _weights_files(config: BuildConfig) -> dict[str, Path]:
    """The weights file of each reference backend the build uses (:func:`check_models` ran first)."""
    if not config.reference_models:
        return {}
    from .reference import find_weights

    return {model: find_weights(model, config.weights_dir) for model in config.reference_models}


def discard_work(out: Path) -> None:
    """Forget the shards of an earlier run (``--restart``); the finished splits stay until the new merge."""
    shutil.rmtree(Path(out) / WORK_DIR, ignore_errors=True)


def _chunks(items: Iterator[Photo], size: int) -> Iterator[list[Photo]]:
    while chunk := list(itertools.islice(items, size)):
        yield chunk


def run_build(config: BuildConfig, progress: Optional[Progress] = None) -> Summary:
    from .privacy import removals

    progress = progress or (lambda stage, n: None)
    check_models(config)
    work, crawl_date, started_with = _prepare_work_dir(config)
    summary = Summary()
    scan_summary = ScanSummary()
    shard_dirs = []
    now = Blocklist.from_file(config.blocklist)
    # never fetched, though the shards keep the photos the build started with: blocklisted since it started, or
    # removed from the dataset (a --restart over a removal must not fetch and cut the removed faces again)
    not_fetched = (Blocklist(now.nsids - started_with.nsids, now.photo_ids - started_with.photo_ids)
                     | removals(Path(config.out)))

    def pending() -> Iterator[tuple[list[Photo], Path]]:
        """Shards still to build, in order; completed ones are counted and skipped on the way."""
        chunks = _chunks(select(config, scan_summary, progress, started_with), config.shard_size)
        for number, photos in enumerate(chunks):
            shard_dir = work / f"shard_{number:05d}"
            shard_dirs.append(shard_dir)
            stats = completed_stats(shard_dir)
            if stats is None:
                allowed = [p for p in photos if p not in not_fetched]
                if len(allowed) < len(photos):
                    summary.skipped[SkipReason.BLOCKLISTED.value] += len(photos) - len(allowed)
                    progress("photos", len(photos) - len(allowed))
                yield allowed, shard_dir
            else:
                summary.shards["resumed"] += 1
                summary.add_shard(stats)
                progress("photos", len(photos))

    if config.executor == "ray":
        from .distributed import run_shards_ray as run_shards
    else:
        run_shards = run_shards_locally
    for stats in run_shards(config, pending(), crawl_date, progress):
        summary.shards["built"] += 1
        summary.add_shard(stats)
    summary.selection = scan_summary.to_dict()
    return _finish(config, summary, shard_dirs)


def _finish(config: BuildConfig, summary: Summary, shard_dirs: list[Path]) -> Summary:
    """Merge the shards into the FDF layout, index it for search, and save the summary.

    The merge leaves out every face the build's blocklist or the dataset's removals (its ``blocklist.txt``
    and ``removed.jsonl``) name now, whenever its shard was built: a removal is final, and a blocklist
    that grew since the shards were built needs no ``--restart``.
    """
    from . import privacy

    out = Path(config.out)
    with privacy.dataset_lock(out):
        privacy.recover(out)  # an interrupted removal first: its journal must not later swap over this merge
        blocked = never_again(config)
        left_out = Counter()

        def exclude(record) -> bool:
            hit = blocked.blocks(record.user_nsid, record.photo_id)
            left_out["faces"] += hit
            return hit

        summary.splits = merge_shards(shard_dirs, out, val_fraction=config.val_fraction, exclude=exclude)
        if left_out["faces"]:
            summary.faces["removed_or_blocklisted"] = left_out["faces"]
        write_geometry(out, config.geometry)
        privacy.index_dataset(out)
        write_json(out / "stats.json", summary.to_dict())
    return summary


def never_again(config: BuildConfig) -> Blocklist:
    """Owners and photos that must not be in this build's output: its ``--blocklist`` and its dataset's removals."""
    from .privacy import removals

    return Blocklist.from_file(config.blocklist) | removals(Path(config.out))


def run_shards_locally(config: BuildConfig, jobs, crawl_date: str, progress: Progress) -> Iterator[dict]:
    """Build each (photos, shard directory) job in this process; models load only if a shard needs them."""
    stages = None
    for photos, shard_dir in jobs:
        stages = stages or Stages.from_config(config)
        yield build_shard(stages, photos, shard_dir, crawl_date, progress)


def build_shard(stages: Stages, photos: list[Photo], shard_dir: Path, crawl_date: str, progress: Progress) -> dict:
    writer = ShardWriter(shard_dir, detector=stages.detector.name, crawl_date=crawl_date)
    return _run_shard(stages, photos, writer, progress)


#: Outcomes that may pass on a later try (internal errors: once the bug is fixed); ``retry-failed`` redoes only these.
TRANSIENT = tuple(r.value for r in (SkipReason.HTTP_SERVER_ERROR, SkipReason.HTTP_RATE_LIMITED,
                                     SkipReason.HTTP_TIMEOUT, SkipReason.CONNECTION_ERROR, SkipReason.INTERNAL_ERROR))


def load_saved_config(out: Path, **overrides) -> BuildConfig:
    """The settings a build in ``out`` was made with (``OUT/.work/build.json``), with network overrides."""
    state = Path(out) / WORK_DIR / "build.json"
    if not state.is_file():
        raise BuildError(f"{out} holds no build (no {state})")
    data = json.loads(state.read_text())["config"]
    data.update({k: v for k, v in overrides.items() if v is not None})
    return BuildConfig.from_json(data)


def retry_failed(config: BuildConfig, progress: Optional[Progress] = None) -> Summary:
    """Re-process the photos of a finished build that failed for transient reasons, then merge again."""
    progress = progress or (lambda stage, n: None)
    check_models(config)
    work, crawl_date, _ = _prepare_work_dir(config)
    previous = Path(config.out) / "stats.json"
    if not previous.is_file():
        raise BuildError(f"the build in {config.out} has not finished: re-run `fdf-build build` to resume it first")
    stages = Stages.from_config(config)
    summary = Summary(selection=json.loads(previous.read_text())["selection"])
    shard_dirs = sorted(work.glob("shard_*"))
    blocked = never_again(config)  # never fetch a removed owner's photo again
    for shard_dir in shard_dirs:
        writer = ShardWriter(shard_dir, detector=stages.detector.name, crawl_date=crawl_date, reopen=True)
        photos = writer.take_photos(TRANSIENT, unless=blocked.__contains__)
        if photos:
            summary.shards["retried"] += 1
            summary.photos["retried"] += len(photos)
            stats = _run_shard(stages, photos, writer, progress)
        else:
            stats = completed_stats(shard_dir)
        summary.add_shard(stats)
    return _finish(config, summary, shard_dirs)


def _run_shard(stages: Stages, photos: list[Photo], writer: ShardWriter, progress: Progress) -> dict:
    with ThreadPoolExecutor(stages.config.threads, thread_name_prefix="photo") as pool:
        futures = [pool.submit(stages.process, photo, writer) for photo in photos]
        try:
            for future in as_completed(futures):
                result = future.result()
                progress("photos", 1)
                progress("faces", result.get("kept", 0))
        except BaseException as e:
            # stop fast: photos not started yet are dropped, only those in flight are waited for
            pool.shutdown(wait=True, cancel_futures=True)
            if systemic(e):
                raise stopped(e) from e
            raise
    return writer.close()
