"""The dataset card: ``DATASET/README.md``, a Hugging Face dataset card kept true by every change to the dataset.

:func:`write_card` is the one function the build's merge, a removal, a rehydration and an ``attributes`` run
call once they changed the dataset. It reads what it reports cheaply, whatever the dataset's size: counts per
split, license, owner, photo and model from the splits' SQLite search indexes (fresh after every change), the
build's settings from ``.work/build.json``, its summary from ``stats.json``, the removals' ledger line by line.

The card is YAML metadata (licenses, size category, task categories, pretty name) and Markdown sections, each
between ``<!-- fdf_build:begin NAME -->`` and ``<!-- fdf_build:end NAME -->``. Only those are rewritten, and only
the metadata keys of facts (licenses, size): a maintainer's own sections, text and metadata keys stay as they are.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections import Counter
from pathlib import Path
from typing import Optional

from . import __version__, dedup
from .dataset.layout import METAINFO, PHASH, WORK_DIR, split_dirs
from .files import atomic_write
from .privacy.index import MetainfoIndex
from .sources.filters import LICENSES, license_code

CARD = "README.md"
BEGIN, END = "<!-- fdf_build:begin {} -->", "<!-- fdf_build:end {} -->"
#: Hugging Face's identifiers of YFCC's licenses; CC BY-SA 2.0 has none (it becomes ``other``, named)
HUB_LICENSES = {"by": "cc-by-2.0", "by-nc": "cc-by-nc-2.0", "by-nc-sa": "cc-by-nc-sa-2.0",
                "by-nc-nd": "cc-by-nc-nd-2.0"}
#: each model family's license, by the first word of the name a build records (``detector``, ``keypoint_model``)
MODEL_LICENSES = {"retinaface-mobilenet0.25": "MIT", "mediapipe-pose-full": "Apache-2.0",
                  "movenet-multipose-lightning": "Apache-2.0", "keypointrcnn_resnet50_fpn": "BSD-3-Clause (torchvision)",
                  "face-alignment": "BSD-3-Clause"}
#: metadata keys that are facts (rewritten every time); the others are suggestions, written only where absent
FACT_KEYS = ("license", "license_name", "license_link", "size_categories")
CITATION = """@inproceedings{hukkelas2019deepprivacy,
  title={DeepPrivacy: A Generative Adversarial Network for Face Anonymization},
  author={Hukkel{\\aa}s, H{\\aa}kon and Mester, Rudolf and Lindseth, Frank},
  booktitle={International Symposium on Visual Computing},
  pages={565--578},
  year={2019}
}
@article{thomee2016yfcc100m,
  title={YFCC100M: The New Data in Multimedia Research},
  author={Thomee, Bart and Shamma, David A. and Friedland, Gerald and Elizalde, Benjamin and Ni, Karl and
          Poland, Douglas and Borth, Damian and Li, Li-Jia},
  journal={Communications of the ACM},
  volume={59}, number={2}, pages={64--73},
  year={2016}
}"""


def facts(dataset: Path) -> dict:
    """What the card says, gathered without loading a metainfo file: counts come from the search indexes."""
    dataset = Path(dataset)
    splits, licenses, models = {}, Counter(), Counter()
    for split, directory in split_dirs(dataset):
        index = MetainfoIndex.open(directory / METAINFO)
        try:
            per_license = index.counts("license", "license_url")
            splits[split] = {"faces": sum(per_license.values()), "photos": index.distinct("photo_id"),
                             "owners": index.distinct("nsid"), "licenses": per_license,
                             "attributes": _attribute_runs(directory), "hashed": (directory / PHASH).is_file()}
            for (name, url), n in per_license.items():
                licenses[(name, url)] += n
            for column in ("detector", "keypoint_model"):
                models.update({(column, value): n for (value,), n in index.counts(column).items() if value})
        finally:
            index.close()
    state = _read_json(dataset / WORK_DIR / "build.json")
    build = state.get("config") and {**state["config"], "crawl_date": state.get("crawl_date")}
    stats = _read_json(dataset / "stats.json")
    ledger, removed = dataset / "removed.jsonl", 0
    if ledger.is_file():
        with open(ledger, encoding="utf-8") as lines:
            removed = sum(1 for line in lines if line.strip())
    return {"name": dataset.resolve().name, "splits": splits, "licenses": licenses, "models": models,
            "build": build, "stats": stats, "removed": removed,
            "total": {k: sum(s[k] for s in splits.values()) for k in ("faces", "photos", "owners")}}


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _attribute_runs(directory: Path) -> Optional[dict]:
    """Faces with attributes and which model made each field (the first record's ``models``), or None."""
    path = directory / "attributes.jsonl"
    if not path.is_file():
        return None
    count, models = 0, {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                models = models or json.loads(line).get("models", {})
                count += 1
    return {"faces": count, "models": models}


def write_card(dataset: Path) -> Path:
    """(Re)write ``DATASET/README.md`` from the dataset as it is now, keeping what a maintainer wrote; atomic."""
    dataset = Path(dataset)
    path = dataset / CARD
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    atomic_write(path, render(facts(dataset), old))
    return path


def render(f: dict, old: str = "") -> str:
    """The card for facts ``f``, merged into the card ``old`` (its own metadata keys and text kept)."""
    old_meta, old_body = _split_front_matter(old)
    meta = _merge_metadata(old_meta, _metadata(f))
    body = old_body if old_body.strip() else (
        "<!-- Text outside the fdf_build:begin/end markers is yours: regeneration keeps it. -->\n")
    previous = None
    for name, text in _sections(f):
        body = _put_section(body, name, text, previous)
        previous = name
    return f"---\n{meta}---\n\n{body.lstrip()}"


def _split_front_matter(text: str) -> tuple[str, str]:
    m = re.match(r"---\n(.*?\n)---\n", text, flags=re.S)
    return (m.group(1), text[m.end():]) if m else ("", text)


def _yaml(key: str, value) -> str:
    if isinstance(value, list):
        return f"{key}:\n" + "".join(f"- {json.dumps(v)}\n" for v in value)
    return f"{key}: {json.dumps(value)}\n"


def _metadata(f: dict) -> dict:
    ids = sorted({HUB_LICENSES.get(license_code(url) or "", "other") for _, url in f["licenses"]})
    others = sorted({(name or url, url) for name, url in f["licenses"] if license_code(url) not in HUB_LICENSES})
    n = f["total"]["faces"]
    size = next(c for limit, c in ((1e3, "n<1K"), (1e4, "1K<n<10K"), (1e5, "10K<n<100K"), (1e6, "100K<n<1M"),
                                   (1e7, "1M<n<10M"), (float("inf"), "10M<n<100M")) if n < limit)
    meta = {"license": ids or ["unknown"], "size_categories": [size]}
    if others:  # the Hub asks a name (and a link) for `other`
        meta["license_name"] = ", ".join(name for name, _ in others)
        meta["license_link"] = others[0][1] if len(others) == 1 else "attribution.csv"
    meta.update({"pretty_name": f"{f['name']}: FDF-style faces from YFCC100M",
                 "task_categories": ["unconditional-image-generation", "image-to-image", "keypoint-detection"],
                 "tags": ["faces", "fdf", "yfcc100m", "flickr", "face-anonymization"],
                 "annotations_creators": ["machine-generated"], "source_datasets": ["yfcc100m"]})
    return meta


def _merge_metadata(old: str, ours: dict) -> str:
    """Our fact keys replace theirs (or go, when no longer true); other keys keep the maintainer's value."""
    blocks, key = {}, None
    for line in old.splitlines(keepends=True):
        m = re.match(r"([A-Za-z_][\w-]*)\s*:", line)
        key = m.group(1) if m else key
        blocks.setdefault(key, []).append(line)
    out = "".join(blocks.pop(None, []))
    for k, value in ours.items():
        if k in FACT_KEYS or k not in blocks:
            blocks.pop(k, None)
            out += _yaml(k, value)
        else:
            out += "".join(blocks.pop(k))
    for k, lines in blocks.items():
        if k not in FACT_KEYS:
            out += "".join(lines)
    return out


def _put_section(body: str, name: str, text: str, after: Optional[str]) -> str:
    """``body`` with section ``name`` holding ``text``: replaced in place, else put after section ``after``
    (or first, when ``after`` is None): a section a newer version adds lands where it belongs."""
    begin, end = BEGIN.format(name), END.format(name)
    block = f"{begin}\n{text.strip()}\n{end}"
    start = body.find(begin)
    if start >= 0 and (stop := body.find(end, start)) >= 0:
        return body[:start] + block + body[stop + len(end):]
    if after is None:
        return block + "\n\n" + body.lstrip("\n")
    at = body.find(END.format(after)) + len(END.format(after))
    return body[:at] + "\n\n" + block + body[at:]


def _table(header: list[str], rows: list[list]) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
                     + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def _license_link(name: str, url: str) -> str:
    return f"[{name or url}]({url})" if url else (name or "(none)")


def _sections(f: dict) -> list[tuple[str, str]]:
    splits, total, build, stats = f["splits"], f["total"], f["build"] or {}, f["stats"]
    today = _dt.date.today().isoformat()
    size = build.get("size", 256)
    header = (
        f"# {f['name']}\n\n"
        f"{total['faces']:,} faces of {total['owners']:,} Flickr users, cut from {total['photos']:,} public photos of "
        "the YFCC100M collection, in the layout of FDF256 (Flickr Diverse Faces, made for DeepPrivacy): each face "
        f"cropped around its box and resampled to {size} x {size} px, with its face box, 7 body keypoints, and its "
        "photo's license, author and Flickr page. DeepPrivacy2's `FDF256Dataset` reads it as it is.\n\n"
        f"This card was generated by fdf_build {__version__} on {today}; every build, merge, removal, rehydration "
        "and `fdf-build attributes` run regenerates the sections between `fdf_build:begin` and `fdf_build:end` "
        "markers and the license and size metadata.")
    rows = [[split, f"{s['faces']:,}", f"{s['photos']:,}", f"{s['owners']:,}"] for split, s in splits.items()]
    rows.append(["**total**", f"**{total['faces']:,}**", f"**{total['photos']:,}**", f"**{total['owners']:,}**"])
    license_rows = [[_license_link(name, url)] + [f"{splits[s]['licenses'].get((name, url), 0):,}" for s in splits]
                    + [f"{n:,}"] for (name, url), n in sorted(f["licenses"].items(), key=lambda kv: -kv[1])]
    counts = ("## Counts\n\nOwners are split by a hash of their Flickr NSID, so no owner is in two splits.\n\n"
              + _table(["split", "faces", "photos", "owners"], rows) + "\n\n### Faces per license\n\n"
              + _table(["license", *splits, "total"], license_rows))
    return [("header", header), ("counts", counts), ("making", _making(f)), ("fdf256", _differences(f)),
            ("layout", _layout(f)), ("privacy", _privacy(f)), ("attribution", _attribution(f)),
            ("citation", "## Citation\n\nCite FDF (DeepPrivacy) and YFCC100M:\n\n```bibtex\n" + CITATION + "\n```")]


def _license_names(codes) -> str:
    return ", ".join(f"CC {c.upper()} 2.0" if c in LICENSES else c for c in codes)


def _model_license(name: str) -> str:
    return MODEL_LICENSES.get(name.split(" ")[0], "see the model's package")


def _making(f: dict) -> str:
    build, stats = f["build"], f["stats"]
    models = [[("face boxes" if column == "detector" else "keypoints"), f"`{name}`", f"{n:,}",
               " / ".join(_model_license(part) for part in name.split(" then "))]
              for (column, name), n in sorted(f["models"].items())]
    parts = ["## How it was made"]
    if build:
        codes = _license_names(build.get("licenses", ()))
        parts.append(
            f"Photos listed in the YFCC100M metadata file, fetched from Flickr (crawled {build.get('crawl_date')}): "
            f"photos, not videos, under {codes}; owners who tagged a photo `no_cv` and the blocklist's owners and "
            f"photos left out. Faces narrower or shorter than {build.get('min_face')} px in the photo are dropped, "
            f"and faces no person's keypoints matched are {'dropped' if build.get('unmatched') == 'drop' else 'kept'}."
            f" Each crop is the face box expanded {build.get('expand')}x to a square, zero-padded where it leaves "
            f"the photo, resampled to {build.get('size')} px (DeepPrivacy2's `get_crop` arithmetic). An owner is in "
            f"val when sha256 of their NSID falls under {build.get('val_fraction')}.")
    else:
        parts.append("Not recorded here (no `.work/build.json`): a published copy. FDF256 was made with DSFD "
                     "faces and keypoint R-CNN keypoints (see the FDF256 column below).")
    if models:
        parts.append("Models, with the faces each annotated (from the metainfo's `detector` and `keypoint_model`):"
                     "\n\n" + _table(["role", "model (package version)", "faces", "license"], models))
    hashed = all(s["hashed"] for s in f["splits"].values()) and f["splits"]
    faces = stats.get("faces", {})
    if "near_duplicate_groups" in faces:
        parts.append(f"Near-duplicates: built with `--dedup`, which kept one face (the earliest uploaded) of each of "
                     f"{faces['near_duplicate_groups']:,} groups of near-identical faces and left "
                     f"{faces.get('near_duplicates', 0):,} out, so no group spans train and val.")
    else:
        parts.append("Near-duplicates: not removed. `fdf-build duplicates DATASET` lists groups of near-identical "
                     "faces (copies of one photo under other accounts can put one face in both splits); "
                     "`fdf-build build ... --dedup` keeps one face of each.")
    if hashed:
        parts[-1] += (f" Every crop's and photo's perceptual hash (imagehash's pHash) is in `phash.npy`; faces "
                      f"{dedup.THRESHOLD} bits apart or fewer count as one.")
    attributes = {s: a for s, a in ((s, v["attributes"]) for s, v in f["splits"].items()) if a}
    if attributes:
        fields = next(iter(attributes.values()))["models"]
        by_model = {}
        for field, model in fields.items():
            by_model.setdefault(model, []).append(field)
        parts.append("Attributes (FFHQ-Features records in `<split>/attributes.jsonl` and `attributes/<n>.json`) for "
                     + ", ".join(f"{a['faces']:,} {s}" for s, a in attributes.items()) + " faces:\n\n"
                     + "\n".join(f"- {', '.join(fs)}: {model}" for model, fs in by_model.items()))
    return "\n\n".join(parts)


def _differences(f: dict) -> str:
    build = f["build"]
    if not build:
        return ""
    detectors = ", ".join(sorted({name for (column, name) in f["models"] if column == "detector"})) or build["detector"]
    keypoints = ", ".join(sorted({name for (column, name) in f["models"] if column == "keypoint_model"})) or "none"
    dedup_row = "one face of each group kept (`--dedup`)" if "near_duplicate_groups" in f["stats"].get("faces", {}) \
        else "not removed"
    rows = [
        ["face detector", "DSFD (ResNet-152)", detectors],
        ["keypoints", "keypoint R-CNN R50-FPN (COCO), nose and both eyes inside the face box", keypoints
         + ", same matching rule"],
        ["faces no person matched", "dropped", "dropped" if build.get("unmatched") == "drop" else "kept"],
        ["size filter", "under 64 x 64 px dropped", f"under {build.get('min_face')} px dropped"],
        ["crop", "`expand_bbox_simple(box, 0.4)`, zero pad, resample to 256",
         f"expand {build.get('expand')}, zero pad, resample to {build.get('size')}"],
        ["licenses", "CC BY, BY-SA, BY-NC, BY-NC-SA 2.0", _license_names(build.get("licenses", ()))],
        ["photos", "248,564 YFCC100M photos (2019)", "what Flickr served at the crawl, minus opt-outs and removals"],
        ["split", "241,982 train / 6,533 val faces", f"by owner: sha256(NSID) under {build.get('val_fraction')}"],
        ["near-duplicates", "not removed", dedup_row],
    ]
    return "## Differences from FDF256\n\n" + _table(["", "FDF256", "this dataset"], rows)


def _layout(f: dict) -> str:
    return """## Files and fields

```
<split>/                    train/ and val/
  images/<n>.png            face crops, numbered 0..N-1
  landmarks.npy             (N, 7, 2) float32: nose, left eye, right eye, left ear, right ear, left shoulder,
                            right shoulder, as fractions of the crop side
  bounding_box.npy          (N, 4) int64: face box in crop pixels (x0, y0, x1, y1)
  fdf_metainfo.json         per face ("0", "1", ...): FDF's keys (author, license, license_url, photo_url,
                            user_nsid, original_bounding_box, original_landmark, dates, yfcc100m_line_idx...)
                            and ours (photo_id, download_url, face_index, face_score, detector, keypoint_model,
                            keypoint_scores, phash, photo_phash)
  phash.npy                 (N, 2) uint64: pHash of each crop and of its photo (0: unknown)
  attribution.csv           one row per photo: author, title, Flickr page, license, its images
  attributes.jsonl          per face, when `fdf-build attributes` ran: FFHQ-Features' faceAttributes
crop_geometry.json          how the crops were cut (expand, size, keypoints outside the crop)
removed.jsonl, blocklist.txt  what was removed on request, and never comes back
```

Load it with `fdf_build.FDF256Dataset` or DeepPrivacy2's `FDF256Dataset`."""


def _privacy(f: dict) -> str:
    return f"""## Personal information, and how an owner removes their faces

Every image is the face of a real person, from a photo its Flickr owner published under a Creative Commons
license; the people shown did not necessarily agree to be in a dataset. Each face keeps its owner's Flickr NSID
and photo page so that owners can find and remove their faces:

- search: `python search_username.py DATASET --user_nsid NSID` (or `--photo-url URL`), answered from an index
  beside each `fdf_metainfo.json`;
- a page for owners: `fdf-build serve DATASET` (search by NSID or photo URL, then ask for removal);
- the request queue `removal-requests.jsonl`, applied with `fdf-build remove DATASET --requests
  DATASET/removal-requests.jsonl`: removed faces are renumbered out of every split and their owners and photos
  go on `blocklist.txt`, which every later build and rehydration honours.

Removed so far: {f['removed']:,} face(s) (`removed.jsonl`). Photo tags `no_cv` opt a photo's owner out of every build.
Do not try to identify the people shown."""


def _attribution(f: dict) -> str:
    codes = sorted({license_code(url) or url for _, url in f["licenses"]})
    duties = {"by": "credit the author (name, title, link to the photo and to the license)",
              "nc": "no commercial use", "sa": "share adaptations under the same license",
              "nd": "no adaptations (these faces should not be here)"}
    rows = [[_license_names([c]), "; ".join(d for k, d in duties.items() if k in c.split("-"))
             or "see the license"] for c in codes]
    return ("## License duties\n\nEach face is under its photo's license (`license`, `license_url` in the "
            "metainfo). Using or sharing the faces means, per license:\n\n"
            + _table(["license", "what it asks"], rows)
            + "\n\n`<split>/attribution.csv` lists every photo's author, title, Flickr page and license: publish "
              "it with any copy, and mind the NonCommercial faces before any commercial use.")
