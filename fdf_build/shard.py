"""One shard through every stage: what a local build's threads and a Ray actor both run.

:class:`Stages` holds the configured per-photo stages (fetch -> decode -> detect
-> keypoints -> filter -> crop -> perceptual hashes), built once per process; :func:`build_shard`
runs a list of photos through them into a shard directory, which
:mod:`fdf_build.pipeline` later merges.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

from .config import BuildConfig, BuildError
from .crop import cut_faces
from .dataset.writer import ShardWriter
from .decode import decode_image
from .dedup import phash
from .facefilter import large_faces, matched_faces
from .fetch import Fetcher
from .models.faces import FaceDetector
from .models.pose import KeypointModel
from .models.stack import make_models
from .privacy.removal import LiveRemovals
from .records import FaceCrop, Photo, Skip, SkipReason
from .remote import RemoteOutput
from .sources import metadata

log = logging.getLogger(__name__)

#: ``progress(stage, n)``: called with ``("bytes", n)`` while reading metadata,
#: ``("photos", 1)`` per processed photo and ``("faces", k)`` per kept face.
Progress = Callable[[str, int], None]


@dataclass
class Stages:
    """The configured per-photo stages, built once per build (models load here, not per photo)."""

    fetcher: Fetcher
    detector: FaceDetector
    keypoints: Optional[KeypointModel]
    config: BuildConfig
    inference_slots: threading.Semaphore
    #: the dataset's removals and the build's blocklist, as they are now (``photo in removed``)
    removed: LiveRemovals

    @classmethod
    def from_config(cls, config: BuildConfig, *, cpus: Optional[int] = None) -> "Stages":
        """``cpus``: the cores this process may use for CPU inference (default: all of this machine's)."""
        cpus = cpus or os.cpu_count() or 1
        fetcher = config.fetcher()
        detector, keypoints = make_models(config, cpus=cpus)
        # CPU models get a slot per core; batching backends want every photo in flight inside inference at once
        slots = max(config.threads, config.batch_size) if config.reference_models else cpus
        return cls(fetcher, detector, keypoints, config, threading.Semaphore(slots),
                   LiveRemovals(config.out, config.blocklist))

    def process(self, photo: Photo, writer: ShardWriter) -> Counter:
        """Run one photo through every stage; staged faces go to ``writer``, the return value counts outcomes.

        An unexpected exception fails this photo alone, as an ``internal_error`` (traceback in the
        debug log); a :func:`systemic` one (disk full, out of memory) is raised, to stop the build.
        """
        c = self.config
        url = metadata.photo_url(photo, size=c.flickr_size, base_url=c.base_url)
        stats = Counter(tried=1)
        crops: list[FaceCrop] = []  # held until the photo has passed every stage
        try:
            # asked again before the fetch and before the faces are staged: a removal made while the build
            # runs puts its owners on the dataset's blocklist first, and from then on none of theirs is taken
            if photo in self.removed:
                data = Skip(SkipReason.BLOCKLISTED, "removed while the build ran")
            else:
                data = self.fetcher(url)
            if isinstance(data, Skip):
                skip = data
            else:
                stats["fetched"] += 1
                with self.inference_slots:
                    skip = self._analyse(photo, data, crops, stats)
                if photo in self.removed:
                    crops.clear()
                    stats = Counter({k: v for k, v in stats.items() if k in ("tried", "fetched")})
                    skip = Skip(SkipReason.BLOCKLISTED, "removed while the build ran")
            # staged only once every stage has passed, all at once: a failed photo leaves no face behind
            writer.add_faces(crops)
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

    def _analyse(self, photo: Photo, data: bytes, crops: list[FaceCrop], stats: Counter) -> Optional[Skip]:
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
        photo_hash = phash(image)
        crops.extend(dataclasses.replace(c, phash=phash(c.image), photo_phash=photo_hash)
                     for c in cut_faces(photo, image, faces, self.config.geometry, canonical_url))
        return None


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


def run_shards_locally(config: BuildConfig, jobs, crawl_date: str, progress: Progress) -> Iterator[dict]:
    """Build each (photos, shard directory) job in this process; models load only if a shard needs them.

    With a URL ``--out``, each shard is stored there once built (so a build resumed elsewhere keeps it).
    """
    stages = None
    remote = RemoteOutput(config.out_url, config.out) if config.out_url else None
    for photos, shard_dir in jobs:
        stages = stages or Stages.from_config(config)
        stats = build_shard(stages, photos, shard_dir, crawl_date, progress)
        if remote:
            remote.publish_shard(shard_dir)
        yield stats


def build_shard(stages: Stages, photos: list[Photo], shard_dir: Path, crawl_date: str, progress: Progress) -> dict:
    writer = ShardWriter(shard_dir, detector=stages.detector.name, crawl_date=crawl_date)
    return run_shard(stages, photos, writer, progress)


def run_shard(stages: Stages, photos: list[Photo], writer: ShardWriter, progress: Progress) -> dict:
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
