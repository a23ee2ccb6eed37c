"""Commands for photo owners' privacy: ``remove``, ``audit`` and ``serve`` (``search`` is in :mod:`.search`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import click

from . import InputError, printable
from .options import URL, Bars, Output
from .search import query, query_options


@click.command()
@click.argument("dataset", type=Output(exists=True))
@query_options
@click.option("--requests", "requests_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Apply the requests queued in this file by `fdf-build serve` (DATASET/removal-requests.jsonl) "
                   "and mark them done.")
@click.option("--dry-run", is_flag=True, help="List what would be removed; change nothing.")
@click.option("--reason", default="removal request", show_default=True, help="Recorded in removed.jsonl.")
def remove(dataset: Union[Path, str], user_nsid, nsid_file, photo_id, photo_url, requests_file, dry_run: bool,
           reason: str) -> None:
    """Remove every face of the given users or photos from all splits of DATASET.

    Renumbers each split (old -> new numbers in <split>/renumbering.json),
    atomically across splits, appends what went to DATASET/removed.jsonl and
    the NSIDs / photo ids to DATASET/blocklist.txt; pass that file to
    `fdf-build build --blocklist` so they never come back.

    DATASET may be an object store URL (s3://bucket/prefix; the s3 extra) that
    `fdf-build build --out` wrote: the dataset and its stored shards are
    fetched, changed here, and stored again.
    """
    if requests_file is not None and (user_nsid or nsid_file or photo_id or photo_url):
        raise InputError("--requests applies the queued requests: give no other NSID or photo with it")
    query_ = None if requests_file is not None else query(user_nsid, nsid_file, photo_id, photo_url)
    if isinstance(dataset, Path):
        return _remove(dataset, str(dataset), query_, requests_file, dry_run, reason)
    from ..remote import stored_dataset

    with stored_dataset(dataset) as local:
        _remove(local, dataset, query_, requests_file, dry_run, reason)


def _remove(dataset: Path, shown: str, query_, requests_file: Optional[Path], dry_run: bool, reason: str) -> None:
    """``remove`` on the local ``dataset``, named ``shown`` to the user (its URL, for a copy of a stored one)."""
    from ..privacy.removal import plan_removal, remove_faces

    if requests_file is not None:
        return _remove_requests(dataset, requests_file, dry_run)
    nsids, photo_ids = query_
    plan = plan_removal(dataset, nsids=nsids, photo_ids=photo_ids)
    for split, numbers in plan.drop.items():
        for n in numbers:
            e = plan.entries[split][n]
            click.echo(f"{'would remove' if dry_run else 'removing'} {split}/images/{n}.png  {printable(e.photo_url)}")
    if dry_run:
        click.echo(f"{plan.count} face(s) would be removed")
        return
    mappings = remove_faces(plan, reason=reason)  # made again if another removal ran since the listing
    count = sum(new is None for mapping in mappings.values() for new in mapping.values())
    click.echo(f"{count} face(s) removed; ledger {shown}/removed.jsonl, blocklist {shown}/blocklist.txt")
    if count < plan.count:
        click.echo(f"{plan.count - count} of the faces listed had left the dataset meanwhile (a build's merge "
                   "or another removal took them out); all are on the blocklist")


def _remove_requests(dataset: Path, requests_file: Path, dry_run: bool) -> None:
    from ..privacy.requests import apply_requests

    applied = apply_requests(dataset, requests_file, dry_run=dry_run)
    # what the queue holds came from strangers through the owner page (or an edited file): shown, never obeyed
    for line in applied.malformed:
        click.echo(f"{requests_file}: skipped malformed {printable(line)}", err=True)
    for r in applied.requests:
        asked = printable(", ".join([*r.query.nsids, *map(str, r.query.photo_ids)]))
        click.echo(f"{'would apply' if dry_run else 'applied'} request {printable(r.id)} ({printable(r.date)}, "
                   f"{printable(r.contact)}): {asked}, {len(applied.faces[r.id])} face(s)")
        for m in (match.to_dict() for match in applied.faces[r.id]):
            click.echo(f"  {'would remove' if dry_run else 'removed'} {m['split']}/images/{m['image']}.png  "
                       f"{printable(m['photo_url'])}")
    count = 0 if applied.plan is None else applied.plan.count
    earlier = f"; {applied.already_done} applied earlier" if applied.already_done else ""
    if dry_run:
        click.echo(f"{len(applied.requests)} pending request(s), {count} face(s) would be removed{earlier}")
    else:
        click.echo(f"{len(applied.requests)} request(s) applied and marked done in {requests_file}, "
                   f"{count} face(s) removed{earlier}")


@click.command()
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--base-url", type=URL, help="Check photos at this mirror or server instead of Flickr (keeps the path).")
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
    from ..fetch import Fetcher, make_session
    from ..privacy.audit import apply_audit, audit as audit_dataset

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
        click.echo(f"{apply_audit(dataset, report)} face(s) removed")


@click.command()
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
        from ..privacy.serve import run
    except ImportError as e:
        raise click.ClickException(f"{e.name} is missing: pip install 'fdf_build[serve]'") from None
    run(dataset, host=host, port=port, requests_file=requests_file, title=title)
