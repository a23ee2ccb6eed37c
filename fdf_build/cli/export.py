"""``fdf-build export``: a dataset as WebDataset shards, Parquet or StyleGAN's zip, to a directory or a URL."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import click

from ..export.stylegan import LABELS
from .options import Bars

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


class ByteSize(click.ParamType):
    """``500MB``, ``1GiB``, ``2000000``: a number of bytes."""

    name = "size"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(value))
        if not m or m.group(2).upper() not in _UNITS or float(m.group(1)) * _UNITS[m.group(2).upper()] < 1:
            self.fail(f"{value!r} is not a size such as 500MB, 1GiB or 2000000", param, ctx)
        return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def _splits(ctx, param, value: Optional[str]) -> Optional[tuple[str, ...]]:
    from ..split import SPLITS

    if value is None:
        return None
    splits = tuple(s.strip() for s in value.split(",") if s.strip())
    unknown = [s for s in splits if s not in SPLITS]
    if not splits or unknown:
        raise click.BadParameter(f"{value!r}: give one or more of {', '.join(SPLITS)}, comma-separated")
    return splits


@click.command()
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--format", "format_", type=click.Choice(("webdataset", "parquet", "stylegan")), required=True,
              help="webdataset: tar shards; parquet: Hugging Face datasets' Parquet; stylegan: StyleGAN's "
                   "dataset zip (docs/formats.md).")
@click.option("--out", required=True,
              help="Directory or fsspec URL (s3://bucket/prefix, gs://..., file://...; URLs need the s3 extra).")
@click.option("--splits", callback=_splits, help="Splits to export, comma-separated (default: all the dataset has).")
@click.option("--shard-size", type=click.IntRange(1), default=5_000, show_default=True,
              help="Faces per WebDataset or Parquet shard.")
@click.option("--shard-bytes", type=ByteSize(),
              help="Instead: close a shard before its faces' bytes pass this (e.g. 1GB).")
@click.option("--row-group-size", type=click.IntRange(1), default=100, show_default=True,
              help="Parquet: faces per row group (the unit a streaming reader fetches).")
@click.option("--label", type=click.Choice(tuple(LABELS)),
              help="StyleGAN: the dataset.json label: the split, or an attribute (`fdf-build attributes` first).")
@click.option("--workers", type=click.IntRange(1, 64), default=4, show_default=True, help="Shards written at once.")
@click.option("--restart", is_flag=True, help="Discard an earlier export in --out (one with other settings too).")
@click.pass_context
def export(ctx, dataset: Path, format_: str, out: str, splits, shard_size: int, shard_bytes: Optional[int],
           row_group_size: int, label: Optional[str], workers: int, restart: bool) -> None:
    """Export DATASET (FDF layout) for other training tools, each sample with its license and author.

    Splits stay apart, the same dataset always gives the same bytes, and
    re-running the command resumes (finished shards are kept) or, after the
    dataset changed (a removal), exports it anew.

    \b
    Example:
      fdf-build export data/fdf --format webdataset --out s3://bucket/fdf-wds --shard-bytes 1GB
      fdf-build export data/fdf --format parquet --out data/fdf-parquet
      fdf-build export data/fdf --format stylegan --label gender --out data/fdf-stylegan
    """
    from ..export import ExportConfig, run_export

    given = lambda name: ctx.get_parameter_source(name) != click.core.ParameterSource.DEFAULT  # noqa: E731
    if format_ == "stylegan" and (given("shard_size") or shard_bytes):
        raise click.BadParameter("stylegan writes one zip per split", param_hint="--shard-size/--shard-bytes")
    if label and format_ != "stylegan":
        raise click.BadParameter("labels are StyleGAN's (dataset.json)", param_hint="--label")
    config = ExportConfig(dataset=dataset, out=out, format=format_, splits=splits, shard_size=shard_size,
                          shard_bytes=shard_bytes, row_group_size=row_group_size, label=label, workers=workers)
    from ..dataset.layout import load_array, split_dirs

    # landmarks.npy has a row per face and is cheap to open, unlike a 186 MB metainfo
    total = sum(load_array(d, "landmarks.npy", mmap_mode="r").shape[0] for s, d in split_dirs(dataset)
                if splits is None or s in splits)
    with Bars({"exported": total}, default=dict(unit="face")) as bars:
        summary = run_export(config, bars, restart=restart)
    if summary.restarted:
        click.echo(f"started over: {summary.restarted}")
    shards = summary.shards
    click.echo(f"{format_}: {sum(summary.faces.values()):,} faces ("
               + ", ".join(f"{split}: {n:,}" for split, n in summary.faces.items())
               + f") in {shards['written'] + shards['resumed']:,} file(s), {shards['written']:,} written now, "
               f"{shards['resumed']:,} already there")
    click.echo(f"manifest: {summary.manifest}")
