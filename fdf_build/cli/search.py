"""The search command and the query options (which owners, which photos) it shares with ``remove``.

Apart from the other commands so that ``search_username.py`` starts on click and the stdlib alone: no numpy,
cv2 or requests (``python -X importtime search_username.py ...`` shows it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import click

from . import Command, InputError


def _read_ids(nsid_file: Optional[Path]) -> tuple[set[str], set[int]]:
    if nsid_file is None:
        return set(), set()
    from ..flickr import read_ids

    return read_ids(nsid_file)


def query(user_nsid, nsid_file, photo_id, photo_url) -> tuple[list[str], list[int]]:
    """The NSIDs and photo ids the query options name; a URL without a photo id, or no query, is bad input."""
    from ..flickr import photo_id_from_url

    file_nsids, file_photo_ids = _read_ids(nsid_file)
    nsids = [*user_nsid, *sorted(file_nsids)]
    photo_ids = [*photo_id, *sorted(file_photo_ids)]
    for url in photo_url:
        found = photo_id_from_url(url)
        if found is None:
            raise InputError(f"--photo-url {url!r}: no Flickr photo id in it")
        photo_ids.append(found)
    if not nsids and not photo_ids:
        raise InputError("give at least one of --user_nsid, --nsid-file, --photo-id, --photo-url")
    for nsid in user_nsid:  # what goes on a blocklist must read back as one entry
        if not nsid.isprintable() or any(c.isspace() or c == "#" for c in nsid):
            raise InputError(f"--user_nsid {nsid!r}: not an NSID (no spaces, '#' or control characters)")
    return nsids, photo_ids


def query_options(command):
    for option in reversed([
        click.option("--user_nsid", "--user-nsid", "user_nsid", multiple=True,
                     help="Flickr user NSID (e.g. 12345678@N00); repeatable."),
        click.option("--nsid-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="File of NSIDs (all-digit lines: photo ids), one a line, '#' comments; "
                          "a blocklist.txt works."),
        click.option("--photo-id", type=int, multiple=True, help="Flickr photo id; repeatable."),
        click.option("--photo-url", multiple=True,
                     help="Any Flickr URL of a photo: page, static image of any size, or flic.kr link; repeatable."),
    ]):
        command = option(command)
    return command


@click.command(cls=Command, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("path", type=click.Path(path_type=Path))
@query_options
@click.option("--json", "as_json", is_flag=True, help="Print the matches as one JSON list.")
def search_command(path: Path, user_nsid, nsid_file, photo_id, photo_url, as_json: bool) -> None:
    """Find every face of a Flickr user (or photo) in a dataset.

    PATH is a split's fdf_metainfo.json, a split directory or a dataset root
    (all splits are searched). Exit status: 0 found, 1 not found, 2 bad input.

    \b
    Example:
      python search_username.py data/fdf256/train/fdf_metainfo.json --user_nsid=12345678@N00
    """
    from ..privacy.index import search

    nsids, photo_ids = query(user_nsid, nsid_file, photo_id, photo_url)
    matches = search(path, nsids=nsids, photo_ids=photo_ids)
    if as_json:
        click.echo(json.dumps([m.to_dict() for m in matches], ensure_ascii=False))
    else:
        for m in matches:
            d = m.to_dict()
            click.echo(f"{d['split']}/images/{d['image']}.png  {d['photo_url']}  {d['photo_title']!r}  {d['license']}")
        click.echo(f"{len(matches)} face(s) found", err=True)
    if not matches:
        raise SystemExit(1)


def search_main() -> None:
    search_command(prog_name="search_username.py")
