"""``fdf-build features``: FFHQ-Features' json folder for a set of face images."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from ..errors import BadInput
from .options import Bars, echo_counter, parsing_option


@click.command()
@click.argument("images", nargs=-1, required=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for one <stem>.json per image (FFHQ-Features' json/ folder).")
@click.option("--workers", type=click.IntRange(1, 256), help="Processes, one model set each (default: all cores).")
@click.option("--min-face", type=click.IntRange(1), default=36, show_default=True,
              help="Ignore faces narrower or shorter than this many pixels (the cloud API behind FFHQ-Features "
                   "found faces from 36 px).")
@parsing_option
def features(images: tuple[str, ...], out: Path, workers: Optional[int], min_face: int,
             parsing: Optional[bool]) -> None:
    """Write FFHQ-Features records for IMAGES: OUT/<stem>.json per image, a list of its faces ([] when none).

    IMAGES are image files, folders (searched recursively), quoted glob patterns
    ('ffhq/*/*.png') or list files (.txt: one path a line). Each face gets the
    14 faceAttributes in FFHQ's order; a field no model gives is null and the
    record's "models" says why. A run that is stopped resumes where it was: images
    whose .json exists are skipped.

    \b
    Example:
      fdf-build features ffhq/images1024x1024 --out ffhq-features/json
      python -c "import json; print(json.load(open('ffhq-features/json/00000.json'))[0]['faceAttributes']['age'])"
    """
    from ..features import default_workers, expand_inputs, run_features

    paths = expand_inputs(images)  # inputs naming no image, or two images one stem: bad input, exit 2
    workers = workers or default_workers()
    with Bars({"images": len(paths)}, default=dict(unit="image")) as bars:
        summary = run_features(paths, out, workers=workers, min_face=min_face, parsing=parsing, progress=bars)
    click.echo(f"features: {out}/ ({summary.images:,} images: {summary.written:,} written, "
               f"{summary.already_done:,} already there; {summary.faces:,} faces, "
               f"{summary.without_face:,} images without a face)")
    if summary.skipped:
        echo_counter("skipped", dict(summary.skipped))
        for example in summary.examples.values():
            click.echo(f"  e.g. {example}", err=True)
        raise BadInput(f"{sum(summary.skipped.values())} image(s) could not be read (the others are written), e.g. "
                       f"{next(iter(summary.examples.values()))}")
