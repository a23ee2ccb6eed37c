"""The ``fdf-build`` command line: a thin shell that parses options, calls the library and prints summaries."""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path

import click
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from . import metadata
from .filters import DEFAULT_LICENSES, LICENSES, Blocklist, Eligibility, resolve_licenses
from .scan import scan as scan_metadata


def eligibility_options(command):
    """The filter options every command that selects photos shares; they become one ``eligibility`` argument."""

    @click.option(
        "--licenses",
        default=",".join(DEFAULT_LICENSES),
        show_default=True,
        help=f"Comma-separated licenses to accept: short codes ({', '.join(LICENSES)}) or license URLs.",
    )
    @click.option(
        "--blocklist",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="File of owner NSIDs and photo ids to exclude, one a line, '#' comments.",
    )
    @functools.wraps(command)
    def wrapper(*args, licenses, blocklist, **kwargs):
        try:
            allowed = resolve_licenses(licenses.split(","))
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--licenses") from None
        eligibility = Eligibility(licenses=allowed, blocklist=Blocklist.from_file(blocklist))
        return command(*args, eligibility=eligibility, **kwargs)

    return wrapper


def bytes_bar(path, desc: str) -> tqdm:
    return tqdm(
        total=metadata.source_size(path), unit="B", unit_scale=True, unit_divisor=1024, desc=desc, leave=False
    )


def echo_counter(title: str, counts: dict) -> None:
    click.echo(f"{title}:")
    for key, n in counts.items():
        click.echo(f"  {key or '(none)'}: {n:,}")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "FDF_BUILD"})
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def cli(verbose: bool) -> None:
    """Build, download, search and curate FDF-style face datasets from YFCC100M Flickr photos."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")


@cli.command()
@click.argument("file", type=click.Path(allow_dash=True, dir_okay=False, path_type=str))
@eligibility_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object to stdout instead of text.")
def scan(file: str, eligibility: Eligibility, as_json: bool) -> None:
    """Count what a YFCC100M metadata FILE holds and which photos are eligible.

    FILE is the 25-column yfcc100m_dataset file (or the 23-column Webscope
    release), plain, .bz2 or .gz, or - for stdin.

    \b
    Example:
      fdf-build scan yfcc100m_dataset.bz2 --licenses by,by-sa --json
    """
    if file != "-" and not Path(file).is_file():
        raise click.BadParameter(f"{file} does not exist", param_hint="FILE")
    with logging_redirect_tqdm(), bytes_bar(file, "scan") as bar:
        with metadata.open_metadata(file, on_bytes=bar.update) as lines:
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


def main() -> None:
    cli(prog_name="fdf-build")
