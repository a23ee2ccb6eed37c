"""Distribution: build shards on a Ray cluster (``--executor ray``), one actor per CPU (or per GPU with
``--device cuda``).

Each actor loads the models once (like a local build's :class:`~fdf_build.shard.Stages`)
and builds whole shards, writing them where a local build would; the driver
streams the metadata, keeps a bounded number of shards in flight, and merges
at the end exactly as a local build does, so the output is the same bytes.
On a multi-machine cluster, ``--out`` is either on a filesystem every node sees or an object store URL
(``s3://...``): then each actor builds its shards on its own disk and stores them there, and the driver
merges from there (:mod:`fdf_build.remote`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator

from .config import BuildConfig, BuildError
from .sources.metadata import format_line, parse_line

#: shards queued per actor beyond the one it is working on: enough to keep actors busy, bounded for memory
QUEUE_PER_ACTOR = 1


class ShardActor:
    def __init__(self, config: BuildConfig):
        from .shard import Stages

        self.stages = Stages.from_config(config, cpus=1)  # the one CPU Ray gave this actor
        self.out_url = config.out_url

    def build(self, lines: list[str], shard_dir: str, crawl_date: str) -> tuple[int, dict]:
        from .remote import RemoteOutput, scratch
        from .shard import build_shard

        photos = [parse_line(line, 0) for line in lines]
        quiet = lambda stage, n: None  # noqa: E731
        if self.out_url is None:
            return len(photos), build_shard(self.stages, photos, Path(shard_dir), crawl_date, quiet)
        # this node may not see the driver's disk: build here, store the shard at --out, the driver fetches it
        with scratch("fdf_build-shard-") as folder:
            local = folder / Path(shard_dir).name
            stats = build_shard(self.stages, photos, local, crawl_date, quiet)
            RemoteOutput(self.out_url, folder).publish_shard(local)
        return len(photos), stats


def run_shards_ray(config: BuildConfig, jobs: Iterable, crawl_date: str, progress) -> Iterator[dict]:
    try:
        import ray
        from ray.util import ActorPool
    except ImportError:
        raise BuildError("--executor ray needs Ray: pip install 'fdf_build[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here and config.ray_address:
        ray.init(address=config.ray_address, include_dashboard=False, log_to_driver=False)
    elif started_here:
        start_local_ray()
    try:
        resources = ray.available_resources()
        if config.device.startswith("cuda"):
            # reference backends on GPUs: one actor per GPU, each batching its shards' photos
            actor, count = ray.remote(num_cpus=1, num_gpus=1)(ShardActor), int(resources.get("GPU", 0))
            if not count:
                raise BuildError("--device cuda with --executor ray: the Ray cluster has no GPU")
        else:
            actor, count = ray.remote(num_cpus=1)(ShardActor), int(resources.get("CPU", 1))
        actors = [actor.remote(config) for _ in range(max(1, count))]
        pool = ActorPool(actors)
        in_flight, limit = 0, len(actors) * (1 + QUEUE_PER_ACTOR)
        for photos, shard_dir in jobs:
            lines = [format_line(p) for p in photos]
            pool.submit(lambda a, job: a.build.remote(*job), (lines, str(shard_dir), crawl_date))
            in_flight += 1
            if in_flight >= limit:
                yield _collect(pool.get_next_unordered(), progress)
                in_flight -= 1
        while pool.has_next():
            yield _collect(pool.get_next_unordered(), progress)
    finally:
        if started_here:
            ray.shutdown()


#: Off, Ray takes this machine for a one-node cluster: every Ray process then listens on 127.0.0.1 only.
_RAY_CLUSTER_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def start_local_ray(**options) -> None:
    """Start a Ray instance for this machine alone, every one of its processes listening on 127.0.0.1 only.

    A plain ``ray.init()`` on Linux listens on all interfaces (its GCS, raylets and workers, so that
    other machines can join) at the address facing the network. A build that starts its own Ray needs
    no network, so it turns Ray's cluster mode off, as Ray does on macOS and Windows: through its
    switch, an environment variable (inherited by the processes Ray starts) that Ray reads once at
    import, hence also the constant it was read into. ``options`` go to ``ray.init`` (``num_cpus``...).
    """
    import ray
    from ray._private import ray_constants

    saved = os.environ.get(_RAY_CLUSTER_SWITCH), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[_RAY_CLUSTER_SWITCH], ray_constants.ENABLE_RAY_CLUSTER = "0", False
    try:
        ray.init(include_dashboard=False, log_to_driver=False, **options)
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved[1]
        if saved[0] is None:
            os.environ.pop(_RAY_CLUSTER_SWITCH)
        else:
            os.environ[_RAY_CLUSTER_SWITCH] = saved[0]


def _collect(result: tuple[int, dict], progress) -> dict:
    photos, stats = result
    progress("photos", photos)
    progress("faces", stats["faces"].get("kept", 0))
    return stats
