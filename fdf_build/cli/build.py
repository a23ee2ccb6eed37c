"""Commands that build: ``scan``, ``build``, ``retry-failed``, ``demo`` and ``detect``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import click

from ..config import DEFAULT_KEYPOINTS, DETECTORS, KEYPOINT_MODELS, BuildConfig
from ..decode import DEFAULT_MAX_PIXELS
from ..errors import BadInput, Stopped
from ..sources import metadata
from ..sources.filters import Eligibility
from ..sources.scan import ScanSummary, scan_file
from ..sources.stream import MetadataError
from . import InputError
from .dataset import annotate_dataset
from .options import (URL, Bars, build_options, echo_counter, eligibility_options, parsing_option,
                      politeness_options, reference_options)


@click.command()
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
    summary, stopped = ScanSummary(), None
    with Bars({"bytes": metadata.source_size(file)}) as bars:
        try:
            scan_file(file, eligibility, summary, on_bytes=lambda n: bars("bytes", n))
        except MetadataError as e:  # what was read is still worth saying
            stopped = e
    _echo_scan(summary.to_dict(), as_json)
    if stopped:
        raise InputError(str(stopped))
    refuse_not_metadata(summary.to_dict(), file)


def _echo_scan(result: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(result))
    else:
        for key in ("lines", "photos", "videos", "malformed", "eligible", "authors", "eligible_authors"):
            click.echo(f"{key}: {result[key]:,}")
        for example in result["malformed_examples"]:
            click.echo(f"  malformed line {example['line']}: {example['reason']}")
        echo_counter("licenses", result["licenses"])
        echo_counter("rejected", result["rejected"])


@click.command()
@click.argument("file", type=click.Path(allow_dash=True, dir_okay=False, path_type=str))
@build_options
@eligibility_options
@click.option("--limit", type=click.IntRange(0), help="Stop after this many eligible photos.")
@click.option("--base-url", type=URL,
              help="Fetch every photo from this mirror or server instead (keeps Flickr's path).")
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
@click.option("--local-dir", type=click.Path(file_okay=False, path_type=Path),
              help="With a URL --out: where this machine merges the shards before uploading the dataset "
                   "(default: a folder in the temp dir, removed once the dataset is uploaded).")
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
    if isinstance(options["out"], str) and with_attributes:
        raise click.BadParameter("with a URL --out, run `fdf-build attributes` on a local copy",
                                 param_hint="--attributes")
    _run_and_report(lambda progress: _build(file, progress, options), options["out"], source=file)
    if with_attributes:
        annotate_dataset(options["out"])


def _build(file, progress, options):
    import shutil

    from ..pipeline import run_build
    from ..remote import RemoteOutput, default_local_dir

    options = dict(options)
    resume, out, local_dir = options.pop("resume"), options.pop("out"), options.pop("local_dir")
    url = out if isinstance(out, str) else None
    config = BuildConfig(metadata=file, out=(local_dir or default_local_dir(url)) if url else out, out_url=url,
                         **options)
    if url and not resume:
        RemoteOutput(url, config.out).discard_work()
    summary = run_build(config, progress, restart=not resume)
    if url and not local_dir:
        shutil.rmtree(config.out.parent)  # uploaded: the local copy was only where the merge ran
    return summary


def _run_and_report(job, out: Path, source: str = "the metadata file") -> None:
    from ..shard import stopped, systemic

    try:
        with Bars() as bars:
            summary = job(bars)
    except MetadataError as e:
        if e.summary is not None:
            echo_selection(e.summary.to_dict())
        raise InputError(str(e)) from None
    except (OSError, MemoryError) as e:  # outside the photos' stages: while merging, say
        if not systemic(e):
            raise
        raise stopped(e) from None
    summary = summary.to_dict()
    echo_build_summary(summary, out)
    refuse_nothing_built(summary, out, source)


def refuse_not_metadata(selection: dict, source: str) -> None:
    """A file none of whose lines parses (a JPEG, the wrong table) is bad input, after the counts that show it."""
    if selection["lines"] and selection["malformed"] == selection["lines"]:
        first = selection["malformed_examples"][0]
        raise BadInput(f"{source}: none of its {selection['lines']:,} lines is a YFCC100M metadata line (line "
                       f"{first['line']}: {first['reason']}); give the yfcc100m_dataset file (.tsv, .bz2 or .gz)")


def refuse_nothing_built(summary: dict, out: Path, source: str) -> None:
    """After its summary, a build that could not make anything says why in one line and exits non-zero: a file
    that is not YFCC100M metadata at all is bad input (2); no eligible photo, or none fetched, a stop (1)."""
    from ..pipeline import TRANSIENT

    sel, photos = summary["selection"], summary["photos"]
    refuse_not_metadata(sel, source)
    if not sel["eligible"]:
        why = max(sel["rejected"].items(), key=lambda kv: kv[1], default=None)
        raise Stopped(f"{source}: no eligible photo in {sel['lines']:,} line(s), nothing to build"
                      + (f" (commonest reason: {why[0]}, {why[1]:,} photo(s); see --licenses and --blocklist)"
                         if why else ""))
    if photos.get("tried") and not photos.get("fetched"):
        reason, n = max(summary["skipped"].items(), key=lambda kv: kv[1])
        again = (f"; check --base-url and the network, then `fdf-build retry-failed {out}` tries them again"
                 if reason in TRANSIENT else "")
        raise Stopped(f"no photo could be fetched: {n:,} of {photos['tried']:,} failed with {reason} (the "
                      f"commonest reason){again}")


def echo_selection(sel: dict) -> None:
    click.echo(f"metadata: {sel['lines']:,} lines, {sel['malformed']:,} malformed, {sel['eligible']:,} eligible photos")
    if sel["rejected"]:
        echo_counter("not eligible", sel["rejected"], "  ")


def echo_build_summary(summary: dict, out: Path) -> None:
    photos, faces, skipped = summary["photos"], summary["faces"], summary["skipped"]
    echo_selection(summary["selection"])
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
        + (f"; {faces.get('near_duplicates', 0):,} left out as near-duplicates ({faces['near_duplicate_groups']:,} "
           "groups, one face kept of each)" if "near_duplicate_groups" in faces else "")
    )
    click.echo(f"dataset: {out}/{{train,val}}/  (stats in {out}/stats.json)")


@click.command("retry-failed")
@click.argument("out", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--base-url", type=URL, help="Fetch from this mirror or server instead (keeps Flickr's path).")
@click.option("--workers", type=click.IntRange(1, 512), help="Photos in flight at once.")
@click.option("--rate", type=click.FloatRange(0.01), help="Requests per second to each host.")
def retry_failed(out: Path, base_url: Optional[str], workers: Optional[int], rate: Optional[float]) -> None:
    """Try again the photos of the build in OUT that failed for transient reasons (5xx, 429, timeouts,
    connection errors) or with an internal error, with the build's own settings, and merge again.

    Each shard's photos.jsonl lists every photo's outcome; removed, missing and
    undecodable photos are not retried.
    """
    from ..pipeline import load_saved_config, retry_failed as retry

    def job(progress):
        return retry(load_saved_config(out, base_url=base_url, workers=workers, rate=rate), progress)

    _run_and_report(job, out)


@click.command()
@build_options
@click.option("--serve", is_flag=True,
              help="Then keep the photo server running until Ctrl-C, printing its URL: build, retry-failed, audit "
                   "and rehydrate can then be tried offline with --base-url URL.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="With --serve: the port on 127.0.0.1 to serve on (0: any free one).")
def demo(out: Path, serve: bool, port: int, **options) -> None:
    """Run the whole build offline on the bundled sample photos.

    Serves the photos from a local server under Flickr-style URLs, writes a
    matching YFCC-format file to OUT/demo_yfcc100m.tsv and builds OUT/.

    \b
    Example:
      fdf-build demo --out data/demo --serve
      fdf-build build data/demo/demo_yfcc100m.tsv --out data/mine --base-url URL   # in another shell
    """
    from ..demo import build_demo, demo_server

    if isinstance(out, str):
        raise click.BadParameter("the demo writes to a local directory", param_hint="--out")

    with demo_server(out, port=port, max_seconds=None if serve else 600.0) as (url, tsv):
        _run_and_report(lambda progress: build_demo(out, url, tsv, progress=progress, **options), out)
        if serve:
            click.echo(f"demo photo server: {url}  (Ctrl-C stops it)\ndemo metadata: {tsv}\n"
                       f"try: fdf-build build {tsv} --out {out}-rebuild --base-url {url}")
            _wait_for_interrupt()


def _wait_for_interrupt() -> None:
    """Block until Ctrl-C or SIGTERM (a service manager's stop), then return, so the server shuts down cleanly."""
    import signal
    import threading

    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):  # a timed wait, so Ctrl-C's KeyboardInterrupt is seen in the main thread
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--detector", type=click.Choice(DETECTORS), default="retinaface", show_default=True)
@click.option("--keypoints", type=click.Choice(KEYPOINT_MODELS), default=DEFAULT_KEYPOINTS, show_default=True)
@reference_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image per line.")
@click.option("--attributes", "with_attributes", is_flag=True,
              help="Add each face's faceRectangle and faceAttributes, computed on the crop a build would cut.")
@parsing_option
def detect(images: tuple[Path, ...], detector: str, keypoints: str, as_json: bool, with_attributes: bool,
           parsing: Optional[bool], **reference) -> None:
    """Detect faces and the 7 FDF keypoints in local IMAGES (all faces, before the size filter).

    Boxes and keypoints are in original pixels; keypoints are nose, left eye,
    right eye, left ear, right ear, left shoulder, right shoulder (the person's
    left), null where no model found them.
    """
    from ..dataset.metainfo import detection_record
    from ..decode import decode_image
    from ..models.stack import check_models, make_models
    from ..records import Skip

    config = BuildConfig(metadata="-", out=Path("."), detector=detector, keypoints=keypoints, **reference)
    check_models(config)
    face_detector, keypoint_model = make_models(config)
    if with_attributes:
        from ..attributes import AttributeModels, photo_attributes

        attribute_models = AttributeModels(parsing=parsing)
    failed = []
    for path in images:
        image = decode_image(path.read_bytes())
        if isinstance(image, Skip):
            click.echo(f"{path}: {image.detail}", err=True)
            failed.append(str(path))
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
        raise InputError(f"{len(failed)} of {len(images)} image(s) could not be decoded: {', '.join(failed[:3])}"
                         + (f" and {len(failed) - 3} more" if len(failed) > 3 else ""))


def _attribute_line(a: dict) -> str:
    """A face's attributes in a line; null ones (see the record's ``models``) are left out."""
    parts = [f"{a['gender']}, age {a['age']:.0f}" if a.get("gender") is not None else "",
             f"smile {a['smile']:.2f}, {max(a['emotion'], key=a['emotion'].get)}" if a.get("emotion") else "",
             "yaw {yaw:+.0f} pitch {pitch:+.0f} roll {roll:+.0f}".format(**a["headPose"]) if a.get("headPose") else "",
             a["glasses"] or "", f"{a['exposure']['exposureLevel']}, noise {a['noise']['noiseLevel']}"]
    return "; ".join(p for p in parts if p)
