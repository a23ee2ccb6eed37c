"""Commands on a dataset: ``pack``, ``verify``, ``rehydrate``, ``attributes``, ``duplicates`` and ``report``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import click

from ..errors import Stopped
from .options import URL, Bars, Output, echo_counter, echo_problems, parsing_option, politeness_options


@click.command()
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=Output(), required=True,
              help="Directory or object store URL (s3://bucket/prefix...; the s3 extra) for the zips and "
                   "manifest.json (host it as a mirror).")
@click.option("--metadata-only", is_flag=True,
              help="Only metainfo.zip (metainfo, landmarks, boxes, attribution, image md5s, crop geometry): "
                   "no pixels; users recreate the images from Flickr with `fdf-build rehydrate`.")
def pack(dataset: Path, out, metadata_only: bool) -> None:
    """Pack a DATASET in the FDF layout into FDF256's zips plus a manifest, for hosting a mirror.

    \b
    Example:
      fdf-build pack data/fdf_rebuild --out mirror/
      python download_fdf256.py data/copy --manifest mirror/manifest.json --base-url http://host/mirror
      fdf-build pack data/fdf_rebuild --out meta-mirror/ --metadata-only
    """
    from ..dataset.archive import pack as pack_dataset
    from ..privacy.removal import recover

    recover(dataset)  # a removal a killed command left half done is finished before anything is packed
    manifest = pack_dataset(dataset, out, metadata_only=metadata_only)
    for f in manifest["files"]:
        click.echo(f"{f['name']}: {f['size']:,} bytes, md5 {f['md5']}")
    click.echo(f"manifest: {str(out).rstrip('/')}/manifest.json")


@click.command()
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
def verify(dataset: Path) -> None:
    """Check that every split of DATASET is consistent: images, landmarks.npy, bounding_box.npy and metainfo agree."""
    from ..dataset.layout import dataset_splits, verify_dataset

    dataset_splits(dataset)  # a folder with no split is no dataset: bad input, not a failed check
    problems = verify_dataset(dataset)
    if echo_problems(problems):
        raise click.ClickException(f"{dataset} is not a consistent FDF dataset")
    click.echo(f"{dataset}: OK ({', '.join(problems)})")


@click.command()
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--yfcc", type=click.Path(exists=True, dir_okay=False, path_type=str),
              help="YFCC100M metadata file (plain, .bz2 or .gz), read once, to find the photos whose metainfo "
                   "entry has no image URL (FDF's published form) by yfcc100m_line_idx or photo id.")
@click.option("--base-url", type=URL,
              help="Fetch every photo from this mirror or server instead (keeps Flickr's path).")
@click.option("--blocklist", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Owner NSIDs and photo ids to take out, one a line ('#' comments); DATASET/blocklist.txt "
                   "is always honoured.")
@click.option("--changed", type=click.Choice(("keep", "drop")), default="keep", show_default=True,
              help="A recut whose md5 differs from the published one (the photo changed on Flickr): keep it "
                   "(listed in the report) or take the face out.")
@click.option("--drop-failed", is_flag=True,
              help="Take out the faces of photos that still fail after retries (5xx, timeouts...), and finish; "
                   "without it the run stops unfinished and a re-run tries them again. Photos the metainfo gives "
                   "no URL for stay until --yfcc finds them.")
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
    from ..rehydrate import RehydrateConfig, rehydrate as run

    with Bars() as bars:
        summary = run(RehydrateConfig(dataset=dataset, **options), bars).to_dict()
    echo_rehydrate_summary(summary, dataset, options.get("yfcc"))


def echo_rehydrate_summary(summary: dict, dataset: Path, yfcc: Optional[str] = None) -> None:
    from ..rehydrate import FACES_REPORT, GONE, NOT_IN_YFCC

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
        unlocated = failed.pop(NOT_IN_YFCC, 0)
        advice = [f"{', '.join(f'{k}: {n:,}' for k, n in failed.items())}: re-run to try them again (what is done "
                  "is kept), or pass --drop-failed to take them out"] if failed else []
        if unlocated:  # never --drop-failed: these photos may well be on Flickr, the file to find them is missing
            advice.append(f"{unlocated:,} have no image URL in the metainfo (FDF's published form): "
                          + (f"they are not in {yfcc}; give the whole YFCC100M metadata file with --yfcc"
                             if yfcc else "pass --yfcc with the YFCC100M metadata file (yfcc100m_dataset, plain, "
                                          ".bz2 or .gz) to find them"))
        raise Stopped(f"{faces.get('unfinished', 0):,} face(s) of {sum(failed.values()) + unlocated:,} photo(s) "
                      "could not be recreated; " + "; ".join(advice))
    click.echo(f"dataset: {dataset}/{{train,val}}/ ("
               + ", ".join(f"{n:,} {split}" for split, n in summary["splits"].items())
               + f"); faces not as published: {dataset / FACES_REPORT}")


@click.command()
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--attribute-model", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Your own ONNX model for more fields (facialHair, makeup...; see docs/attributes.md).")
@parsing_option
def attributes(dataset: Path, attribute_model: Optional[Path], parsing: Optional[bool]) -> None:
    """Write per-face attributes in the FFHQ-Features schema: DATASET/<split>/attributes/<n>.json and attributes.jsonl.

    Every record has FFHQ-Features' 14 attributes in its order: gender, age,
    smile, emotion, headPose, exposure and noise from the offline models inside
    the package; glasses, accessories, hair, occlusion and eye makeup from the
    parsing extra; a field no model gives is null and "models" says why.
    """
    annotate_dataset(dataset, attribute_model, parsing)


def annotate_dataset(dataset: Path, attribute_model: Optional[Path] = None, parsing: Optional[bool] = None) -> None:
    from ..attributes import AttributeModels, OnnxAttributeModel, annotate_split
    from ..card import write_card
    from ..dataset.layout import dataset_splits, load_array
    from ..privacy.removal import changing

    splits = dataset_splits(dataset)
    models = AttributeModels(parsing=parsing,
                             user_model=OnnxAttributeModel(attribute_model) if attribute_model else None)
    with changing(dataset, "fdf-build attributes"):  # no removal renumbers the faces while they are annotated
        # landmarks.npy has a row per face and is cheap to open, unlike a 186 MB metainfo
        totals = {"attributes": sum(load_array(d, "landmarks.npy", mmap_mode="r").shape[0] for _, d in splits)}
        with Bars(totals, default=dict(unit="face")) as bars:  # an unreadable dataset: DatasetError, one line
            counts = {split: annotate_split(directory, models, progress=bars) for split, directory in splits}
        write_card(dataset)
    click.echo("attributes: " + ", ".join(f"{split}: {n:,} faces" for split, n in counts.items()))


@click.command()
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object a line per group: its faces as split and image number, its splits, distance.")
@click.option("--threshold", type=click.IntRange(0, 64), default=None,
              help="Hashes at most this many bits apart (of 64) are the same face  [default: the measured one, "
                   "see docs/benchmarks.md]")
def duplicates(dataset: Path, as_json: bool, threshold: Optional[int]) -> None:
    """List groups of near-identical faces in DATASET (re-encoded, resized, lightly cropped or recoloured copies),
    across photos, owners and splits, from each split's phash.npy (images without one are hashed now).

    `fdf-build build --dedup` keeps one face of each group.

    \b
    Example:
      fdf-build duplicates data/fdf_rebuild
      fdf-build duplicates data/fdf_rebuild --json | jq -c 'select(.splits | length > 1)'
    """
    from ..dataset.duplicates import find_duplicates
    from ..dataset.metainfo import read_metainfo
    from ..dedup import THRESHOLD

    with Bars() as bars:
        groups = find_duplicates(dataset, threshold=THRESHOLD if threshold is None else threshold, progress=bars)
    if as_json:
        for group in groups:
            click.echo(json.dumps(group.to_json()))
        return
    spanning = sum(len(g.splits) > 1 for g in groups)
    click.echo(f"{len(groups):,} group(s) of near-identical faces ({sum(len(g.faces) for g in groups):,} faces); "
               f"{spanning:,} span train and val")
    wanted = {split for g in groups for split, _ in g.faces}
    records = {split: read_metainfo(dataset / split) for split in wanted}
    for k, group in enumerate(groups, 1):
        click.echo(f"group {k}: {len(group.faces)} faces, up to {group.distance} bits apart")
        for split, n in group.faces:
            r = records[split].get(str(n))
            who = f"{r.user_nsid or '?'}  {r.photo_url or r.download_url}" if r else "(not in the metainfo)"
            click.echo(f"  {split}/images/{n}.png  {who}")


@click.command()
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("report"), show_default=True,
              help="Directory for index.html (one self-contained file: charts and thumbnails inlined).")
def report(dataset: Path, out: Path) -> None:
    """Write an HTML report of DATASET to publish beside it: the card's numbers, split and license tables, charts
    (licenses, splits, face sizes, faces per photo, keypoints, attributes), near-duplicate groups, sample crops."""
    from ..report import make_report

    click.echo(f"report: {make_report(dataset, out)}")
