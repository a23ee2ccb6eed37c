"""``download_fdf256.py`` and ``fdf-build download``: fetch a published copy, verified and resumable."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Optional

import click

from . import Command
from .dataset import _run_rehydrate
from .options import URL, Bars, echo_problems


def _split_commas(ctx, param, value):
    return None if value is None else tuple(v.strip() for v in value.split(",") if v.strip())


@click.command(cls=Command, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("target", default="data/fdf256", type=click.Path(file_okay=False, path_type=Path))
@click.option("--manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Manifest JSON (as fdf-build pack writes it) instead of the built-in FDF256 one.")
@click.option("--base-url", type=URL,
              help="Fetch every file as BASE_URL/<file name> (a mirror laid out like fdf-build pack).")
@click.option("--mirror", "mirrors", type=URL, multiple=True, help="Fallback copy, tried in order: MIRROR/<file name>.")
@click.option("--licenses", callback=_split_commas,
              help="Only these image archives, comma-separated (cc-by-2, cc-by-nc-2, cc-by-sa-2, cc-by-nc-sa-2).")
@click.option("--workers", type=click.IntRange(1, 16), default=3, show_default=True, help="Files downloaded at once.")
@click.option("--retries", type=click.IntRange(0), default=5, show_default=True,
              help="Retries per source on connection errors, timeouts, 5xx and 429.")
@click.option("--timeout", type=click.FloatRange(0.1), default=30.0, show_default=True,
              help="Seconds to connect and between bytes.")
@click.option("--deadline", type=click.FloatRange(1), default=6 * 3600.0, show_default=True,
              help="Wall-clock seconds for one file, all its sources and retries together; what came stays in "
                   "its .part, and a re-run resumes.")
@click.option("--keep-archives", is_flag=True, help="Keep the zips after extracting them.")
@click.option("--verify-only", is_flag=True, help="Download nothing: check archives and the extracted layout.")
@click.option("--dry-run", is_flag=True,
              help="Download nothing: print each file, where it would come from, and its size where the manifest "
                   "or a HEAD request knows it ('size unknown' otherwise).")
@click.option("--rehydrate", "rehydrate_after", is_flag=True,
              help="Download only the metadata, then recreate the images from Flickr (fdf-build rehydrate).")
@click.option("--yfcc", type=click.Path(exists=True, dir_okay=False, path_type=str),
              help="With --rehydrate: the YFCC100M metadata file, for photos the metainfo gives no image URL for.")
@click.option("--photos-from", type=URL,
              help="With --rehydrate: fetch photos from this server instead (keeps Flickr's path).")
def download_command(target: Path, manifest, base_url, mirrors, licenses, workers, retries, timeout, deadline,
                     keep_archives, verify_only, dry_run, rehydrate_after, yfcc, photos_from) -> None:
    """Download a published FDF256 copy into TARGET/{train,val}/ (default data/fdf256): verified, resumable.

    With --rehydrate, only metainfo.zip is downloaded and the images are cut
    again from the photos on Flickr; photos since deleted drop out.
    """
    from ..dataset.download import FileDownloader, download_dataset, load_manifest
    from ..dataset.layout import holds_dataset
    from ..fetch import make_session

    if rehydrate_after and (licenses or verify_only or dry_run):
        raise click.UsageError("--rehydrate downloads the metadata only: it does not go with --licenses, "
                               "--verify-only or --dry-run")
    if rehydrate_after:
        licenses = ()
    files = load_manifest(manifest)
    into_dataset = holds_dataset(target) and not (dry_run or verify_only)
    with _holding(target) if into_dataset else nullcontext():
        with Bars({f.name: f.size for f in files}, default=Bars.BYTES) as progress:
            report = download_dataset(
                target, manifest=files, base_url=base_url, mirrors=mirrors, licenses=licenses, workers=workers,
                keep_archives=keep_archives, verify_only=verify_only, dry_run=dry_run, progress=progress,
                downloader=FileDownloader(make_session(workers), timeout=timeout, retries=retries,
                                          deadline=deadline),
            )
        if into_dataset and any(f.status in ("downloaded", "verified") for f in report.files):
            _removals_stay_removed(target)
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
    if not verify_only and report.ok:
        from ..privacy.index import index_dataset

        index_dataset(target)  # so the first search_username.py is as fast as the next
    click.echo(f"{target}: OK ({', '.join(report.layout_problems)})")
    if rehydrate_after:
        _run_rehydrate(target, yfcc=yfcc, base_url=photos_from, timeout=timeout)
    elif not any(f.license for f in files):
        click.echo(f"metadata only: recreate the images with `fdf-build rehydrate {target}`")


def _holding(target: Path):
    """An existing dataset under its lock, settled first (what a killed command left is finished)."""
    from ..privacy.removal import changing

    return changing(target, "fdf-build download")


def _removals_stay_removed(target: Path) -> None:
    """A published copy downloaded over a dataset brings back the faces its removals took out: out they go."""
    from ..privacy.removal import reapply_removals

    gone = reapply_removals(target, reason="download over the dataset: its removals applied again")
    if gone:
        click.echo(f"{gone} face(s) of the dataset's removals (removed.jsonl, blocklist.txt) taken out again")


def what_to_do(manifest: Optional[Path], target: Path, *, images_only: bool) -> str:
    """The way out after failed downloads: the manifest's own note, the other sources this command takes, and
    rehydration when only image archives failed (the metadata is there to recreate them from)."""
    from ..dataset.download import manifest_note

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


def download_main() -> None:
    download_command(prog_name="download_fdf256.py")
