"""The ``fdf-build`` command line: a thin shell that parses options, calls the library and prints summaries.

One group, its commands in modules by concern (click's ``add_command``)."""

from __future__ import annotations

import logging

import click

from . import Group, build, dataset, download, export, features, privacy
from .search import search_command


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "FDF_BUILD"})
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def cli(verbose: bool) -> None:
    """Build, download, search and curate FDF-style face datasets from YFCC100M Flickr photos."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not verbose:  # the object store clients' info lines ("Found credentials in environment variables"...)
        for name in ("botocore", "aiobotocore", "s3fs"):
            logging.getLogger(name).setLevel(logging.WARNING)


for command in (build.scan, build.build, build.retry_failed, build.demo, build.detect, dataset.pack, dataset.verify,
                dataset.rehydrate, dataset.attributes, features.features, dataset.duplicates, dataset.report,
                privacy.remove, privacy.audit, privacy.serve):
    cli.add_command(command)
cli.add_command(export.export)
cli.add_command(download.download_command, name="download")
cli.add_command(search_command, name="search")


def main() -> None:
    cli(prog_name="fdf-build")
