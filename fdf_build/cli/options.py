"""What several commands share: option groups, progress bars, summary printing."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

import click
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from ..config import (DEFAULT_EXPAND, DEFAULT_KEYPOINTS, DEFAULT_VAL_FRACTION, DETECTORS, KEYPOINT_MODELS,
                      LANDMARK_MODELS, UNMATCHED)
from ..geometry import KEYPOINTS_OUTSIDE
from ..sources.filters import DEFAULT_LICENSES, LICENSES, resolve_licenses


class HttpUrl(click.ParamType):
    """A server's address, refused at parse time unless it is http(s)://host...: without a scheme, every request
    would fail alike (``request_error``) only after the work started."""

    name = "URL"

    def convert(self, value, param, ctx):
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            self.fail(f"{value!r} is not an http:// or https:// URL (e.g. http://127.0.0.1:8000)", param, ctx)
        return value


#: the type of every option naming a server (--base-url, --mirror, --photos-from)
URL = HttpUrl()


def eligibility_options(command):
    """The filter options every command that selects photos shares, validated at the boundary."""

    def check_licenses(ctx, param, value: str) -> tuple[str, ...]:
        codes = tuple(v.strip() for v in value.split(",") if v.strip())
        try:
            resolve_licenses(codes)
        except ValueError as e:
            raise click.BadParameter(str(e)) from None
        return codes

    command = click.option(
        "--licenses",
        default=",".join(DEFAULT_LICENSES),
        show_default=True,
        callback=check_licenses,
        help=f"Comma-separated licenses to accept: short codes ({', '.join(LICENSES)}) or license URLs.",
    )(command)
    return click.option(
        "--blocklist",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="File of owner NSIDs and photo ids to exclude, one a line, '#' comments.",
    )(command)


class Output(click.ParamType):
    """A directory (a ``Path``; with ``exists``, one that exists), or an fsspec URL such as ``s3://bucket/prefix``
    (kept as text)."""

    name = "directory or URL"

    def __init__(self, *, exists: bool = False):
        self.exists = exists

    def convert(self, value, param, ctx):
        from ..storage import is_remote

        if isinstance(value, str) and is_remote(value):
            return value
        return click.Path(exists=self.exists, file_okay=False, path_type=Path).convert(value, param, ctx)


def build_options(command):
    """Options shared by ``build`` and ``demo``: how photos are fetched, detected, cropped and split."""
    options = [
        click.option("--out", type=Output(), required=True,
                     help="Output directory, or an object store URL (s3://bucket/prefix...; the s3 extra); "
                          "{train,val}/ land here, shards in OUT/.work/."),
        click.option("--workers", type=click.IntRange(1, 512), default=16, show_default=True,
                     help="Photos in flight at once (fetching threads)."),
        click.option("--min-face", type=click.IntRange(1), default=64, show_default=True,
                     help="Drop faces narrower or shorter than this many pixels in the original photo."),
        click.option("--size", type=click.IntRange(8), default=256, show_default=True,
                     help="Side of the output face crops in pixels."),
        click.option("--expand", type=click.FloatRange(1.0), default=DEFAULT_EXPAND, show_default=True,
                     help="Crop side = max(face width, height) x this, in DeepPrivacy2's integer arithmetic "
                          "(1.4: FDF256's crops)."),
        click.option("--keypoints-outside", type=click.Choice(KEYPOINTS_OUTSIDE), default="clamp",
                     show_default=True,
                     help="Keypoints outside the crop: clamped to its border in landmarks.npy, as DeepPrivacy2 "
                          "does, or NaN/null (original_landmark keeps them either way)."),
        click.option("--val-fraction", type=click.FloatRange(0, 1), default=DEFAULT_VAL_FRACTION,
                     show_default=True, help="Share of authors (by NSID hash) whose faces go to val/."),
        click.option("--detector", type=click.Choice(DETECTORS), default="retinaface", show_default=True,
                     help="Face detector backend (dsfd: the reference's, needs the reference extra and weights)."),
        click.option("--keypoints", type=click.Choice(KEYPOINT_MODELS), default=DEFAULT_KEYPOINTS, show_default=True,
                     help="Keypoint model matched to each face: BlazePose then MoveNet MultiPose for its misses "
                          "(default), one of them alone, keypointrcnn (the reference's), or 'none' (the "
                          "detector's nose and eyes only)."),
        click.option("--unmatched", type=click.Choice(UNMATCHED),
                     help="A face no person's keypoints matched: drop it, as FDF256 did (default), or keep it "
                          "with the detector's nose and eyes (ears and shoulders NaN/null; the default with "
                          "--keypoints none)."),
        click.option("--crawl-date", help="date_crawled to record (default: the day the build started)."),
        click.option("--dedup", is_flag=True,
                     help="Keep one face of each group of near-identical faces (`fdf-build duplicates` lists them): "
                          "the earliest uploaded, so no group spans train and val. Only the merge changes: "
                          "re-running a finished build with it re-merges its shards."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def politeness_options(command):
    """How photos are fetched from Flickr, shared by ``build`` and ``rehydrate`` (the same fetcher serves both)."""
    options = [
        click.option("--per-host", type=click.IntRange(1), default=8, show_default=True,
                     help="Concurrent requests per host."),
        click.option("--rate", type=click.FloatRange(0.01), default=20.0, show_default=True,
                     help="Requests per second to each host; a host answering 429/503 is paused for all workers."),
        click.option("--timeout", type=click.FloatRange(0.1), default=20.0, show_default=True,
                     help="Seconds to connect and between bytes of a photo."),
        click.option("--deadline", type=click.FloatRange(0.1), default=120.0, show_default=True,
                     help="Wall-clock seconds for one photo's whole fetch, retries included: a server that sends "
                          "slowly is given up then, however it sends."),
        click.option("--retries", type=click.IntRange(0), default=3, show_default=True,
                     help="Retries per photo on connection errors, timeouts, 5xx and 429."),
        click.option("--retry-budget", type=click.IntRange(0), default=10_000, show_default=True,
                     help="Retries allowed in the whole run, so a host that is down fails fast."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def reference_options(command):
    """Options of the reference backends (``[reference]`` extra), shared by ``build`` and ``detect``."""
    options = [
        click.option("--landmarks", type=click.Choice(LANDMARK_MODELS),
                     help="Also find 68 face-alignment landmarks per face (reference extra)."),
        click.option("--weights-dir", type=click.Path(file_okay=False, path_type=Path),
                     help="Where reference weights are (else $TORCH_HOME/hub/checkpoints); never downloaded."),
        click.option("--device", default="cpu", show_default=True, help="cpu or cuda[:N], for the reference backends."),
        click.option("--batch-size", type=click.IntRange(1), default=8, show_default=True,
                     help="Images per batch for the reference backends."),
        click.option("--fp16", is_flag=True, help="Mixed precision (autocast) on CUDA for the reference backends."),
        click.option("--pad-multiple", type=click.IntRange(1), default=1, show_default=True,
                     help="DSFD: pad each photo to a multiple of this many px, so photos of near sizes share GPU "
                          "batches (64 or 128 on a GPU); 1 runs each at its own size, as the reference did."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


class Bars:
    """tqdm bars for the library's ``progress(stage, n)`` callback, created on first use."""

    BYTES = dict(unit="B", unit_scale=True, unit_divisor=1024)
    STYLE = {
        "bytes": dict(desc="metadata", **BYTES),
        "photos": dict(desc="photos", unit="photo"),
        "faces": dict(desc="faces kept", unit="face"),
    }

    def __init__(self, totals: Optional[dict] = None, *, default: Optional[dict] = None):
        self.totals = totals or {}
        self.default = default or {}
        self.bars: dict[str, tqdm] = {}
        self._lock = threading.Lock()  # called from the library's worker threads

    def __call__(self, stage: str, n: int) -> None:
        with self._lock:
            if stage not in self.bars:
                style = self.STYLE.get(stage, dict(desc=stage, **self.default))
                # disable=None: bars on a terminal only; redirected to a file they would be \r and cursor-up codes
                self.bars[stage] = tqdm(total=self.totals.get(stage), position=len(self.bars), leave=False,
                                        disable=None, **style)
            self.bars[stage].update(n)

    def __enter__(self):
        self._redirect = logging_redirect_tqdm()
        self._redirect.__enter__()
        return self

    def __exit__(self, *exc):
        for bar in self.bars.values():
            bar.close()
        self._redirect.__exit__(*exc)


def echo_counter(title: str, counts: dict, indent: str = "") -> None:
    click.echo(f"{indent}{title}:")
    for key, n in counts.items():
        click.echo(f"{indent}  {key or '(none)'}: {n:,}")


def echo_problems(problems: dict) -> int:
    count = 0
    for split, items in problems.items():
        for problem in items:
            click.echo(f"  {split}: {problem}", err=True)
            count += 1
    return count


def parsing_option(command):
    """``--parsing/--no-parsing``: the face-parsing extra's fields (glasses, accessories, hair, occlusion, eye makeup)."""
    return click.option(
        "--parsing/--no-parsing", default=None,
        help="Use the face-parsing network for glasses, accessories, hair, occlusion and eye makeup (the "
             "'parsing' extra; its weights are CelebAMask-HQ's: non-commercial research only). Default: when "
             "installed; --parsing fails if it is not, --no-parsing leaves those fields null.")(command)
