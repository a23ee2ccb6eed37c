"""The ``fdf-build`` command line: a thin shell that parses options, calls the library and prints summaries."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Optional

import click
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from . import metadata
from .config import (DEFAULT_EXPAND, DEFAULT_KEYPOINTS, DEFAULT_VAL_FRACTION, DETECTORS, KEYPOINT_MODELS,
                     LANDMARK_MODELS, UNMATCHED, BuildConfig)
from .decode import DEFAULT_MAX_PIXELS
from .filters import DEFAULT_LICENSES, LICENSES, Eligibility, resolve_licenses
from .cli_search import InputError, query, query_options, search_command
from .geometry import KEYPOINTS_OUTSIDE
from .scan import scan as scan_metadata


class Commands(click.Group):
    """``fdf-build``'s group: a dataset any command cannot read is reported the same way, by every command."""

    def invoke(self, ctx):
        from .layout import DatasetError

        try:
            return super().invoke(ctx)
        except DatasetError as e:
            raise InputError(str(e)) from None


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


def build_options(command):
    """Options shared by ``build`` and ``demo``: how photos are fetched, detected, cropped and split."""
    options = [
        click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
                     help="Output directory; {train,val}/ land here, shards in OUT/.work/."),
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
                self.bars[stage] = tqdm(total=self.totals.get(stage), position=len(self.bars), leave=False, **style)
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


def echo_build_summary(summary: dict, out: Path) -> None:
    sel, photos, faces = summary["selection"], summary["photos"], summary["faces"]
    skipped = summary["skipped"]
    click.echo(f"metadata: {sel['lines']:,} lines, {sel['malformed']:,} malformed, {sel['eligible']:,} eligible photos")
    if sel["rejected"]:
        echo_counter("not eligible", sel["rejected"], "  ")
    click.echo(
        f"photos: {photos.get('tried', 0):,} tried, {photos.get('fetched', 0):,} fetched, "
        f"{skipped.get('photo_removed', 0):,} removed from Flickr, {skipped.get('no_face', 0):,} without faces"
    )
    failed = {k: v for k, v in skipped.items()
              if k not in ("photo_removed", "no_face", "face_too_small", "no_matched_person")}
    if failed:
        echo_counter("failed", failed, "  ")
    if failed.get("internal_error"):
        click.echo(f"  internal errors are bugs: see {out}/.work/shard_*/photos.jsonl; -v logs their tracebacks")
    click.echo(
        f"faces: {faces.get('found', 0):,} found, {faces.get('too_small', 0):,} dropped as too small, "
        + (f"{faces['unmatched']:,} dropped without a matched person, " if faces.get("unmatched") else "")
        + f"{faces.get('kept', 0):,} kept: "
        + ", ".join(f"{n:,} {split}" for split, n in summary["splits"].items())
        + (f"; {faces['removed_or_blocklisted']:,} left out as removed or blocklisted"
           if faces.get("removed_or_blocklisted") else "")
    )
    click.echo(f"dataset: {out}/{{train,val}}/  (stats in {out}/stats.json)")


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "FDF_BUILD"})
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def cli(verbose: bool) -> None:
    """Build, download, search and curate FDF-style face datasets from YFCC100M Flickr photos."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")


@cli.command()
@click.argument("file", type=click.Path(allow_dash=True, dir_okay=False, path_type=str))
@eligibility_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object to stdout instead of text.")
def scan(file: str, licenses: tuple[str, ...], blocklist: Optional[Path], as_json: bool) -> None:
    """Count what a YFCC100M metadata FILE holds and which photos are eligible.

    FILE is the 25-column yfcc100m_dataset file (or the 23-column Webscope
    release), plain, .bz2 or .gz, or - for stdin.

    \b
    Example:
      fdf-build scan yfcc100m_dataset.bz2 --licenses by,by-sa --json
    """
    if file != "-" and not Path(file).is_file():
        raise click.BadParameter(f"{file} does not exist", param_hint="FILE")
    eligibility = Eligibility.from_options(licenses, blocklist)
    with Bars({"bytes": metadata.source_size(file)}) as bars:
        with metadata.open_metadata(file, on_bytes=lambda n: bars("bytes", n)) as lines:
            summary = scan_metadata(metadata.read_photos(lines), eligibility)
    result = summary.to_dict()
    if as_json:
        click.echo(json.dumps(result))
        return
    for key in ("lines", "photos", "videos", "malformed", "eligible", "authors", "eligible_authors"):
        click.echo(f"{key}: {result[key]:,}")
    for example in result["malformed_examples"]:
        click.echo(f"  malformed line {example['line']}: {example['reason']}")
    echo_counter("licenses", result["licenses"])
    echo_counter("rejected", result["rejected"])


@cli.command()
@click.argument("file", type=click.Path(allow_dash=True, dir_okay=False, path_type=str))
@build_options
@eligibility_options
@click.option("--limit", type=click.IntRange(0), help="Stop after this many eligible photos.")
@click.option("--base-url", help="Fetch every photo from this mirror or server instead (keeps Flickr's path).")
@click.option("--flickr-size", type=click.Choice(sorted(metadata.FLICKR_SIZES)),
              help="Fetch this Flickr size (z 640, c 800, b 1024, o original) instead of YFCC's 500 px URL.")
@click.option("--max-pixels", type=click.IntRange(1), default=DEFAULT_MAX_PIXELS, show_default=True,
              help="Refuse photos whose header declares more pixels than this (too_large), before decoding them.")
@click.option("--shard-size", type=click.IntRange(1), default=10_000, show_default=True,
              help="Photos per shard; a completed shard is never redone when a build is re-run.")
@politeness_options
@reference_options
@click.option("--resume/--restart", default=True, show_default=True,
              help="Keep the completed shards of an earlier run of this build (the default), or discard them.")
@click.option("--executor", type=click.Choice(("local", "ray")), default="local", show_default=True,
              help="Build shards in this process, or on Ray actors (pip install 'fdf_build[ray]').")
@click.option("--ray-address", help="Ray cluster to join (default: start a local Ray).")
@click.option("--attributes", "with_attributes", is_flag=True,
              help="Then write every face's FFHQ-Features attributes, as `fdf-build attributes OUT` does.")
def build(file: str, with_attributes: bool, **options) -> None:
    """Build an FDF256-style dataset from a YFCC100M metadata FILE.

    Streams eligible photos, fetches them, detects faces and 7 keypoints,
    drops faces under --min-face px, crops each to --size px, splits by
    author and writes OUT/{train,val}/. Re-running the same command resumes.

    \b
    Example:
      fdf-build build yfcc100m_dataset.bz2 --out data/fdf_rebuild --limit 10000
    """
    if file != "-" and not Path(file).is_file():
        raise click.BadParameter(f"{file} does not exist", param_hint="FILE")
    _run_and_report(lambda progress: _build(file, progress, options), options["out"])
    if with_attributes:
        annotate_dataset(options["out"])


def _build(file, progress, options):
    from .pipeline import discard_work, run_build

    resume = options.pop("resume")
    config = BuildConfig(metadata=file, **options)
    if not resume:
        discard_work(config.out)
    return run_build(config, progress)


def _run_and_report(job, out: Path) -> None:
    from .pipeline import BuildError, stopped, systemic

    try:
        with Bars() as bars:
            summary = job(bars)
    except (BuildError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    except (OSError, MemoryError) as e:  # outside the photos' stages: while merging, say
        if not systemic(e):
            raise
        raise click.ClickException(str(stopped(e))) from None
    echo_build_summary(summary.to_dict(), out)


@cli.command("retry-failed")
@click.argument("out", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--base-url", help="Fetch from this mirror or server instead (keeps Flickr's path).")
@click.option("--workers", type=click.IntRange(1, 512), help="Photos in flight at once.")
@click.option("--rate", type=click.FloatRange(0.01), help="Requests per second to each host.")
def retry_failed(out: Path, base_url: Optional[str], workers: Optional[int], rate: Optional[float]) -> None:
    """Try again the photos of the build in OUT that failed for transient reasons (5xx, 429, timeouts,
    connection errors) or with an internal error, with the build's own settings, and merge again.

    Each shard's photos.jsonl lists every photo's outcome; removed, missing and
    undecodable photos are not retried.
    """
    from .pipeline import load_saved_config, retry_failed as retry

    def job(progress):
        return retry(load_saved_config(out, base_url=base_url, workers=workers, rate=rate), progress)

    _run_and_report(job, out)


@cli.command()
@build_options
def demo(out: Path, **options) -> None:
    """Run the whole build offline on the bundled sample photos.

    Serves the photos from a local server under Flickr-style URLs, writes a
    matching YFCC-format file to OUT/demo_yfcc100m.tsv and builds OUT/.
    """
    from .demo import run_demo

    _run_and_report(lambda progress: run_demo(out, progress=progress, **options)[0], out)


@cli.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--detector", type=click.Choice(DETECTORS), default="retinaface", show_default=True)
@click.option("--keypoints", type=click.Choice(KEYPOINT_MODELS), default=DEFAULT_KEYPOINTS, show_default=True)
@reference_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image per line.")
@click.option("--attributes", "with_attributes", is_flag=True,
              help="Add each face's faceRectangle and faceAttributes, computed on the crop a build would cut.")
def detect(images: tuple[Path, ...], detector: str, keypoints: str, as_json: bool, with_attributes: bool,
           **reference) -> None:
    """Detect faces and the 7 FDF keypoints in local IMAGES (all faces, before the size filter).

    Boxes and keypoints are in original pixels; keypoints are nose, left eye,
    right eye, left ear, right ear, left shoulder, right shoulder (the person's
    left), null where no model found them.
    """
    from .decode import decode_image
    from .pipeline import BuildError, check_models, make_models
    from .records import Skip
    from .detect import detection_record

    try:
        config = BuildConfig(metadata="-", out=Path("."), detector=detector, keypoints=keypoints, **reference)
        check_models(config)
        face_detector, keypoint_model = make_models(config)
    except (BuildError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    if with_attributes:
        from .attributes import AttributeModels, photo_attributes

        attribute_models = AttributeModels()
    failed = 0
    for path in images:
        image = decode_image(path.read_bytes())
        if isinstance(image, Skip):
            click.echo(f"{path}: {image.detail}", err=True)
            failed += 1
            continue
        faces = face_detector(image)
        if keypoint_model is not None:
            faces = keypoint_model(image, faces)
        record = detection_record(str(path), image, faces)
        if with_attributes:
            for face, extra in zip(record["faces"], photo_attributes(image, faces, attribute_models,
                                                                      expand=config.expand, size=config.size)):
                face.update(extra)
        if as_json:
            click.echo(json.dumps(record))
        else:
            click.echo(f"{path}: {len(faces)} face(s) in {record['width']}x{record['height']}")
            for f in record["faces"]:
                found = sum(p is not None for p in f["keypoints"])
                extra = ", 68 landmarks" if "landmarks68" in f else ""
                click.echo(f"  box {f['box']} score {f['score']:.3f}, {found}/7 keypoints{extra}")
                if "faceAttributes" in f:
                    click.echo(f"    {_attribute_line(f['faceAttributes'])}")
    if failed:
        raise click.ClickException(f"{failed} of {len(images)} image(s) could not be decoded")


def _attribute_line(a: dict) -> str:
    parts = [f"{a['gender']}, age {a['age']:.0f}" if "gender" in a else "",
             f"smile {a['smile']:.2f}, {max(a['emotion'], key=a['emotion'].get)}" if "emotion" in a else "",
             "yaw {yaw:+.0f} pitch {pitch:+.0f} roll {roll:+.0f}".format(**a["headPose"]) if "headPose" in a else "",
             f"blur {a['blur']['blurLevel']}, {a['exposure']['exposureLevel']}, noise {a['noise']['noiseLevel']}"]
    return "; ".join(p for p in parts if p)


def echo_problems(problems: dict) -> int:
    count = 0
    for split, items in problems.items():
        for problem in items:
            click.echo(f"  {split}: {problem}", err=True)
            count += 1
    return count


@cli.command()
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory for the zips and manifest.json (host it as a mirror).")
@click.option("--metadata-only", is_flag=True,
              help="Only metainfo.zip (metainfo, landmarks, boxes, attribution, image md5s, crop geometry): "
                   "no pixels; users recreate the images from Flickr with `fdf-build rehydrate`.")
def pack(dataset: Path, out: Path, metadata_only: bool) -> None:
    """Pack a DATASET in the FDF layout into FDF256's zips plus a manifest, for hosting a mirror.

    \b
    Example:
      fdf-build pack data/fdf_rebuild --out mirror/
      python download_fdf256.py data/copy --manifest mirror/manifest.json --base-url http://host/mirror
      fdf-build pack data/fdf_rebuild --out meta-mirror/ --metadata-only
    """
    from .archive import pack as pack_dataset

    try:
        manifest = pack_dataset(dataset, out, metadata_only=metadata_only)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    for f in manifest["files"]:
        click.echo(f"{f['name']}: {f['size']:,} bytes, md5 {f['md5']}")
    click.echo(f"manifest: {out / 'manifest.json'}")


@cli.command()
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
def verify(dataset: Path) -> None:
    """Check that every split of DATASET is consistent: images, landmarks.npy, bounding_box.npy and metainfo agree."""
    from .layout import verify_dataset

    problems = verify_dataset(dataset)
    if echo_problems(problems):
        raise click.ClickException(f"{dataset} is not a consistent FDF dataset")
    click.echo(f"{dataset}: OK ({', '.join(problems)})")


def _split_commas(ctx, param, value):
    return None if value is None else tuple(v.strip() for v in value.split(",") if v.strip())


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("target", default="data/fdf256", type=click.Path(file_okay=False, path_type=Path))
@click.option("--manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Manifest JSON (as fdf-build pack writes it) instead of the built-in FDF256 one.")
@click.option("--base-url", help="Fetch every file as BASE_URL/<file name> (a mirror laid out like fdf-build pack).")
@click.option("--mirror", "mirrors", multiple=True, help="Fallback copy, tried in order: MIRROR/<file name>.")
@click.option("--licenses", callback=_split_commas,
              help="Only these image archives, comma-separated (cc-by-2, cc-by-nc-2, cc-by-sa-2, cc-by-nc-sa-2).")
@click.option("--workers", type=click.IntRange(1, 16), default=3, show_default=True, help="Files downloaded at once.")
@click.option("--retries", type=click.IntRange(0), default=5, show_default=True,
              help="Retries per source on connection errors, timeouts, 5xx and 429.")
@click.option("--timeout", type=click.FloatRange(0.1), default=30.0, show_default=True,
              help="Seconds to connect and between bytes.")
@click.option("--keep-archives", is_flag=True, help="Keep the zips after extracting them.")
@click.option("--verify-only", is_flag=True, help="Download nothing: check archives and the extracted layout.")
@click.option("--dry-run", is_flag=True,
              help="Download nothing: print each file, where it would come from, and its size where the manifest "
                   "or a HEAD request knows it ('size unknown' otherwise).")
@click.option("--rehydrate", "rehydrate_after", is_flag=True,
              help="Download only the metadata, then recreate the images from Flickr (fdf-build rehydrate).")
@click.option("--yfcc", type=click.Path(exists=True, dir_okay=False, path_type=str),
              help="With --rehydrate: the YFCC100M metadata file, for photos the metainfo gives no image URL for.")
@click.option("--photos-from", help="With --rehydrate: fetch photos from this server instead (keeps Flickr's path).")
def download_command(target: Path, manifest, base_url, mirrors, licenses, workers, retries, timeout,
                     keep_archives, verify_only, dry_run, rehydrate_after, yfcc, photos_from) -> None:
    """Download a published FDF256 copy into TARGET/{train,val}/ (default data/fdf256): verified, resumable.

    With --rehydrate, only metainfo.zip is downloaded and the images are cut
    again from the photos on Flickr; photos since deleted drop out.
    """
    from .download import FileDownloader, download_dataset, load_manifest
    from .fetch import make_session

    if rehydrate_after and (licenses or verify_only or dry_run):
        raise click.UsageError("--rehydrate downloads the metadata only: it does not go with --licenses, "
                               "--verify-only or --dry-run")
    if rehydrate_after:
        licenses = ()
    try:
        files = load_manifest(manifest)
    except ValueError as e:
        raise InputError(str(e)) from None
    try:
        with Bars({f.name: f.size for f in files}, default=Bars.BYTES) as progress:
            report = download_dataset(
                target, manifest=files, base_url=base_url, mirrors=mirrors, licenses=licenses, workers=workers,
                keep_archives=keep_archives, verify_only=verify_only, dry_run=dry_run, progress=progress,
                downloader=FileDownloader(make_session(workers), timeout=timeout, retries=retries),
            )
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    for f in report.files:
        size = f" ({f.size:,} bytes)" if f.size is not None else (" (size unknown)" if dry_run else "")
        click.echo(f"{f.name}{size}: {f.status}" + (f" - {f.detail}" if f.detail else ""))
    if dry_run:
        known = [f.size for f in report.files if f.size is not None]
        unknown = len(report.files) - len(known)
        click.echo(f"{len(report.files)} file(s), {sum(known):,} bytes"
                   + (f" + {unknown} file(s) of unknown size" if unknown else ""))
        return
    bad_layout = echo_problems(report.layout_problems)
    if report.failed or bad_layout:
        names = ", ".join(f.name for f in report.failed)
        only_images = names and all(f.name != "metainfo.zip" for f in report.failed)
        raise click.ClickException(
            (f"{len(report.failed)} of {len(report.files)} file(s) failed: {names}. " if names else "")
            + (f"{bad_layout} layout problem(s). " if bad_layout else "")
            + "Nothing unverified was kept under a final name. "
            + (what_to_do(manifest, target, images_only=bool(only_images)) if report.failed else "Re-run to resume.")
        )
    click.echo(f"{target}: OK ({', '.join(report.layout_problems)})")
    if rehydrate_after:
        _run_rehydrate(target, yfcc=yfcc, base_url=photos_from, timeout=timeout)
    elif not any(f.license for f in files):
        click.echo(f"metadata only: recreate the images with `fdf-build rehydrate {target}`")


def what_to_do(manifest: Optional[Path], target: Path, *, images_only: bool) -> str:
    """The way out after failed downloads: the manifest's own note, the other sources this command takes, and
    rehydration when only image archives failed (the metadata is there to recreate them from)."""
    from .download import manifest_note

    note = manifest_note(manifest)
    command = click.get_current_context().command_path
    command = f"python {command}" if command.endswith(".py") else command
    advice = [f"The manifest says: {note}"] if note else []
    advice.append(f"Try: {command} {target} --base-url URL [--mirror URL2 ...]"
                  + ("" if note else ", with a copy laid out as `fdf-build pack` writes it") + ".")
    if images_only:
        advice.append(f"Or recreate the images from Flickr: {command} {target} --rehydrate [--yfcc FILE] "
                      "(same --manifest / --base-url).")
    else:
        advice.append("A metadata-only copy (fdf-build pack --metadata-only) is enough with --rehydrate, which "
                      "recreates the images from Flickr.")
    advice.append("A re-run resumes.")
    return " ".join(advice)


cli.add_command(download_command, name="download")


@cli.command()
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--yfcc", type=click.Path(exists=True, dir_okay=False, path_type=str),
              help="YFCC100M metadata file (plain, .bz2 or .gz), read once, to find the photos whose metainfo "
                   "entry has no image URL (FDF's published form) by yfcc100m_line_idx or photo id.")
@click.option("--base-url", help="Fetch every photo from this mirror or server instead (keeps Flickr's path).")
@click.option("--blocklist", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Owner NSIDs and photo ids to take out, one a line ('#' comments); DATASET/blocklist.txt "
                   "is always honoured.")
@click.option("--changed", type=click.Choice(("keep", "drop")), default="keep", show_default=True,
              help="A recut whose md5 differs from the published one (the photo changed on Flickr): keep it "
                   "(listed in the report) or take the face out.")
@click.option("--drop-failed", is_flag=True,
              help="Take out the faces of photos that still fail after retries (5xx, timeouts...), and finish; "
                   "without it the run stops unfinished and a re-run tries them again.")
@click.option("--workers", type=click.IntRange(1, 512), default=16, show_default=True,
              help="Photos in flight at once.")
@politeness_options
def rehydrate(dataset: Path, **options) -> None:
    """Recreate the images of a metadata-only DATASET from the photos on Flickr.

    Each photo is fetched once, its faces cut again from original_bounding_box
    with the geometry the dataset was cut with, and checked against the
    published md5s. Faces of photos gone from Flickr (as audit judges it)
    or blocklisted are taken out as `fdf-build remove` does (renumbered,
    removed.jsonl) and listed in DATASET/rehydrate_faces.jsonl. Re-running
    resumes.

    \b
    Example:
      python download_fdf256.py data/fdf256 --manifest meta-mirror/manifest.json --base-url URL
      fdf-build rehydrate data/fdf256 --yfcc yfcc100m_dataset.bz2
    """
    _run_rehydrate(dataset, **options)


def _run_rehydrate(dataset: Path, **options) -> None:
    """Rehydrate with progress bars and print the summary (``rehydrate`` and ``download --rehydrate``)."""
    from .rehydrate import RehydrateConfig, rehydrate as run

    try:
        with Bars() as bars:
            summary = run(RehydrateConfig(dataset, **options), bars).to_dict()
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    echo_rehydrate_summary(summary, dataset)


def echo_rehydrate_summary(summary: dict, dataset: Path) -> None:
    from .rehydrate import FACES_REPORT, GONE

    photos, faces, outcomes = summary["photos"], summary["faces"], summary["outcomes"]
    gone = sum(n for k, n in outcomes.items() if k in GONE)
    failed = {k: n for k, n in outcomes.items() if k not in GONE and k not in ("blocklisted", "changed")}
    click.echo(
        f"photos: {photos.get('published', 0):,} in the metainfo, {photos.get('fetched', 0):,} fetched now, "
        f"{photos.get('resumed', 0) + photos.get('already_there', 0):,} done before, {gone:,} gone from Flickr, "
        f"{outcomes.get('blocklisted', 0):,} blocklisted, {outcomes.get('changed', 0):,} changed"
    )
    if outcomes:
        echo_counter("not as published", outcomes, "  ")
    taken = {k: faces[k] for k in ("gone", "blocklisted", "changed_dropped", "failed_dropped") if faces.get(k)}
    click.echo(
        f"faces: {faces.get('published', 0):,} published, {faces.get('identical', 0):,} byte-identical, "
        + (f"{faces['unverified']:,} without a published md5, " if faces.get("unverified") else "")
        + f"{faces.get('changed_kept', 0):,} changed (kept), {sum(taken.values()):,} taken out"
        + (" (" + ", ".join(f"{n:,} {k.replace('_', ' ')}" for k, n in taken.items()) + ")" if taken else "")
    )
    if not summary["complete"]:
        raise click.ClickException(
            f"{faces.get('unfinished', 0):,} face(s) of {sum(failed.values()):,} photo(s) could not be recreated "
            f"({', '.join(f'{k}: {n}' for k, n in failed.items())}); re-run to try them again (what is done is "
            "kept), or pass --drop-failed to take them out"
        )
    click.echo(f"dataset: {dataset}/{{train,val}}/ ("
               + ", ".join(f"{n:,} {split}" for split, n in summary["splits"].items())
               + f"); faces not as published: {dataset / FACES_REPORT}")


cli.add_command(search_command, name="search")


@cli.command()
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@query_options
@click.option("--requests", "requests_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Apply the requests queued in this file by `fdf-build serve` (DATASET/removal-requests.jsonl) "
                   "and mark them done.")
@click.option("--dry-run", is_flag=True, help="List what would be removed; change nothing.")
@click.option("--reason", default="removal request", show_default=True, help="Recorded in removed.jsonl.")
def remove(dataset: Path, user_nsid, nsid_file, photo_id, photo_url, requests_file, dry_run: bool,
           reason: str) -> None:
    """Remove every face of the given users or photos from all splits of DATASET.

    Renumbers each split (old -> new numbers in <split>/renumbering.json),
    atomically across splits, appends what went to DATASET/removed.jsonl and
    the NSIDs / photo ids to DATASET/blocklist.txt; pass that file to
    `fdf-build build --blocklist` so they never come back.
    """
    from .privacy import BadInput, plan_removal, remove_faces

    if requests_file is not None:
        if user_nsid or nsid_file or photo_id or photo_url:
            raise InputError("--requests applies the queued requests: give no other NSID or photo with it")
        return _remove_requests(dataset, requests_file, dry_run)
    nsids, photo_ids = query(user_nsid, nsid_file, photo_id, photo_url)
    try:
        plan = plan_removal(dataset, nsids=nsids, photo_ids=photo_ids)
    except BadInput as e:
        raise InputError(str(e)) from None
    for split, numbers in plan.drop.items():
        for n in numbers:
            e = plan.entries[split][n]
            click.echo(f"{'would remove' if dry_run else 'removing'} {split}/images/{n}.png  {e.photo_url}")
    if dry_run:
        click.echo(f"{plan.count} face(s) would be removed")
        return
    try:
        mappings = remove_faces(plan, reason=reason)  # made again if another removal ran since the listing
    except BadInput as e:
        raise InputError(str(e)) from None
    count = sum(new is None for mapping in mappings.values() for new in mapping.values())
    click.echo(f"{count} face(s) removed; ledger {dataset / 'removed.jsonl'}, blocklist {dataset / 'blocklist.txt'}")


def _remove_requests(dataset: Path, requests_file: Path, dry_run: bool) -> None:
    from .privacy import BadInput
    from .removal_requests import apply_requests

    try:
        applied = apply_requests(dataset, requests_file, dry_run=dry_run)
    except BadInput as e:
        raise InputError(str(e)) from None
    for line in applied.malformed:
        click.echo(f"{requests_file}: skipped malformed {line}", err=True)
    for r in applied.requests:
        asked = ", ".join([*r.query.nsids, *map(str, r.query.photo_ids)])
        click.echo(f"{'would apply' if dry_run else 'applied'} request {r.id} ({r.date}, {r.contact}): {asked}, "
                   f"{len(applied.faces[r.id])} face(s)")
        for m in (match.to_dict() for match in applied.faces[r.id]):
            click.echo(f"  {'would remove' if dry_run else 'removed'} {m['split']}/images/{m['image']}.png  "
                       f"{m['photo_url']}")
    count = 0 if applied.plan is None else applied.plan.count
    earlier = f"; {applied.already_done} applied earlier" if applied.already_done else ""
    if dry_run:
        click.echo(f"{len(applied.requests)} pending request(s), {count} face(s) would be removed{earlier}")
    else:
        click.echo(f"{len(applied.requests)} request(s) applied and marked done in {requests_file}, "
                   f"{count} face(s) removed{earlier}")


@cli.command()
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--base-url", help="Check photos at this mirror or server instead of Flickr (keeps the path).")
@click.option("--rate", type=click.FloatRange(0.01), default=5.0, show_default=True, help="Requests per second.")
@click.option("--workers", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option("--apply", is_flag=True, help="Remove the faces of photos that are gone.")
def audit(dataset: Path, base_url: Optional[str], rate: float, workers: int, apply: bool) -> None:
    """Re-check every photo of DATASET on Flickr; list (or --apply: remove) faces whose photo is gone.

    Each photo is probed with a one-byte request. It is gone only on evidence:
    Flickr redirects it to its "photo unavailable" placeholder (removed or
    private), or the server answers 404 or 410. Anything else (401, 403, 5xx,
    timeouts...) is listed as unknown and never removed; when most photos get
    the same such answer, --apply removes nothing and says so.
    """
    from .fetch import Fetcher, make_session
    from .privacy import BadInput, apply_audit
    from .privacy import audit as audit_dataset

    fetcher = Fetcher(make_session(workers), per_host=workers, retries=2)
    with Bars() as bars:
        report = audit_dataset(dataset, fetcher, base_url=base_url, rate=rate, workers=workers, progress=bars)
    for photo_id, why in sorted(report.gone.items()):
        click.echo(f"gone: photo {photo_id} ({why})")
    for photo_id, why in sorted(report.unknown.items()):
        click.echo(f"unknown: photo {photo_id} ({why})")
    click.echo(f"{report.checked} photo(s) checked, {len(report.gone)} gone, {len(report.unknown)} unknown")
    if report.dominant_failure is not None and not apply:
        answer, count = report.dominant_failure
        click.echo(f"warning: {count} of {report.checked} photos answered {answer}: the server is wrong, "
                   "not the photos", err=True)
    if apply:
        try:
            removed = apply_audit(dataset, report)
        except BadInput as e:
            raise InputError(str(e)) from None
        click.echo(f"{removed} face(s) removed")


@cli.command()
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (behind a reverse proxy: "
              "keep 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port (0: any free one).")
@click.option("--requests", "requests_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Queue file for removal requests  [default: DATASET/removal-requests.jsonl]; put it elsewhere "
                   "when DATASET is mounted read-only.")
@click.option("--title", help="Name of the dataset on the page  [default: DATASET's folder name].")
def serve(dataset: Path, host: str, port: int, requests_file: Optional[Path], title: Optional[str]) -> None:
    """Serve a page where Flickr photo owners find their faces in DATASET and ask for their removal.

    Searches answer what `search_username.py` answers; requests are queued
    for `fdf-build remove DATASET --requests FILE`. Access log on stderr.
    Needs the serve extra: pip install 'fdf_build[serve]'.
    """
    try:
        from .serve import run
    except ImportError as e:
        raise click.ClickException(f"{e.name} is missing: pip install 'fdf_build[serve]'") from None
    from .privacy import BadInput

    try:
        run(dataset, host=host, port=port, requests_file=requests_file, title=title)
    except BadInput as e:
        raise InputError(str(e)) from None


def download_main() -> None:
    download_command(prog_name="download_fdf256.py")


@cli.command()
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--attribute-model", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Your own ONNX model for more fields (glasses, facialHair, makeup...; see README).")
def attributes(dataset: Path, attribute_model: Optional[Path]) -> None:
    """Write per-face attributes in the FFHQ-Features schema: DATASET/<split>/attributes/<n>.json and attributes.jsonl.

    gender, age, smile, emotion, headPose, blur, exposure and noise come from
    the offline models inside the package, for every face.
    """
    annotate_dataset(dataset, attribute_model)


def annotate_dataset(dataset: Path, attribute_model: Optional[Path] = None) -> None:
    from .attributes import AttributeModels, OnnxAttributeModel, annotate_split
    from .layout import load_array, split_dirs

    splits = split_dirs(dataset)
    if not splits:
        raise click.ClickException(f"{dataset}: no train/ or val/ with fdf_metainfo.json")
    models = AttributeModels(user_model=OnnxAttributeModel(attribute_model) if attribute_model else None)
    # landmarks.npy has a row per face and is cheap to open, unlike a 186 MB metainfo
    totals = {"attributes": sum(load_array(d, "landmarks.npy", mmap_mode="r").shape[0] for _, d in splits)}
    with Bars(totals, default=dict(unit="face")) as bars:  # an unreadable dataset is a DatasetError: one line, exit 2
        counts = {split: annotate_split(directory, models, progress=bars) for split, directory in splits}
    click.echo("attributes: " + ", ".join(f"{split}: {n:,} faces" for split, n in counts.items()))


@cli.command()
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("report"), show_default=True,
              help="Directory for index.html and its PNG plots.")
def report(dataset: Path, out: Path) -> None:
    """Write an HTML report of DATASET: licenses, splits, face sizes, faces per photo, keypoints, head pose, samples."""
    from .report import make_report

    try:
        page = make_report(dataset, out)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"report: {page}")


def main() -> None:
    cli(prog_name="fdf-build")
