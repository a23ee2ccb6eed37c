"""Report: an HTML page with PNG plots describing a dataset in the FDF layout (like FDF's README figures)."""

from __future__ import annotations

import html
import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from .attributes import read_records
from .dataset.layout import load_array, read_image, split_dirs
from .dataset.writer import encode_png
from .files import atomic_write

_COLORS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240)]


def _figure():
    import matplotlib

    matplotlib.use("Agg")  # no display: reports are made on servers
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _figure().close(fig)
    return path.name


def _load(root: Path) -> dict:
    data = {}
    for split, directory in split_dirs(root):
        attributes = []
        if (directory / "attributes.jsonl").is_file():
            attributes = [json.loads(line) for line in (directory / "attributes.jsonl").read_text().splitlines()]
        data[split] = {
            "dir": directory,
            "meta": read_records(directory),
            "landmarks": load_array(directory, "landmarks.npy"),
            "attributes": attributes,
        }
    return data


def _sample_grid(data: dict, out: Path, per_row: int = 6, rows: int = 2) -> str:
    tiles = []
    for split in data.values():
        n = len(split["meta"])
        for i in np.linspace(0, n - 1, min(n, per_row * rows), dtype=int) if n else []:
            image = cv2.cvtColor(read_image(split["dir"], i), cv2.COLOR_RGB2BGR)
            size = image.shape[0]
            for k, (x, y) in enumerate(split["landmarks"][i]):
                if not np.isnan(x):
                    cv2.circle(image, (int(x * size), int(y * size)), max(2, size // 64), _COLORS[k][::-1], -1)
            tiles.append(cv2.resize(image, (128, 128), interpolation=cv2.INTER_AREA))
        if len(tiles) >= per_row * rows:
            break
    tiles = tiles[: per_row * rows]
    tiles += [np.zeros((128, 128, 3), np.uint8)] * (-len(tiles) % per_row)
    grid = np.vstack([np.hstack(tiles[r * per_row:(r + 1) * per_row]) for r in range(len(tiles) // per_row)])
    atomic_write(out / "samples.png", encode_png(cv2.cvtColor(grid, cv2.COLOR_BGR2RGB)))
    return "samples.png"


def _attribute_figures(plt, attributes: list[dict], out: Path) -> list[tuple[str, str]]:
    """Age histogram, gender share, top-emotion share and smile histogram, for the fields ``attributes`` wrote."""
    figures = []
    ages = [a["age"] for a in attributes if "age" in a]
    if ages:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.hist(ages, bins=range(0, 101, 5))
        ax.set_xlabel("estimated age (years)")
        ax.set_ylabel("faces")
        ax.set_title("Age")
        figures.append(("Age", _save(fig, out / "age.png")))
    shares = (("Gender", "gender", lambda a: a["gender"]),
              ("Emotion (most likely)", "emotion", lambda a: max(a["emotion"], key=a["emotion"].get)))
    for title, key, value in shares:
        counts = Counter(value(a) for a in attributes if key in a)
        if counts:
            fig, ax = plt.subplots(figsize=(5, 3.5))
            ax.bar(list(counts), list(counts.values()))
            ax.set_ylabel("faces")
            ax.set_title(title)
            ax.tick_params(axis="x", labelrotation=30)
            figures.append((title, _save(fig, out / f"{key}.png")))
    smiles = [a["smile"] for a in attributes if "smile" in a]
    if smiles:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.hist(smiles, bins=20, range=(0, 1))
        ax.set_xlabel("smile (0-1)")
        ax.set_ylabel("faces")
        ax.set_title("Smile")
        figures.append(("Smile", _save(fig, out / "smile.png")))
    return figures


def make_report(root: Path, out: Path) -> Path:
    """Write ``out/index.html`` and its PNGs; returns the HTML path. Attribute plots appear once ``attributes`` ran."""
    root, out = Path(root), Path(out)
    data = _load(root)
    if not data:
        raise ValueError(f"{root}: no train/ or val/ with fdf_metainfo.json")
    out.mkdir(parents=True, exist_ok=True)
    plt = _figure()
    metas = [m for split in data.values() for m in split["meta"].values()]
    figures = []

    fig, ax = plt.subplots(figsize=(7, 3.5))
    licenses = Counter(m.license or "?" for m in metas)
    ax.barh(list(licenses), list(licenses.values()))
    ax.set_xlabel("faces")
    ax.set_title("License mix")
    figures.append(("License mix", _save(fig, out / "licenses.png")))

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.bar(list(data), [len(s["meta"]) for s in data.values()], color=["tab:blue", "tab:orange"][: len(data)])
    ax.set_ylabel("faces")
    ax.set_title("Train / validation")
    figures.append(("Train / validation share", _save(fig, out / "splits.png")))

    fig, ax = plt.subplots(figsize=(6, 3.5))
    sizes = [max(b[2] - b[0], b[3] - b[1]) for m in metas if (b := m.original_bounding_box)]
    ax.hist(sizes, bins=min(50, max(5, len(sizes) // 5)))
    ax.set_xlabel("face size in the original photo (px, max of width and height)")
    ax.set_ylabel("faces")
    ax.set_title("Original face size")
    figures.append(("Original face size", _save(fig, out / "face_sizes.png")))

    fig, ax = plt.subplots(figsize=(5, 3.5))
    per_photo = Counter(m.photo_id or m.photo_url for m in metas)
    counts = Counter(per_photo.values())
    ax.bar(list(counts), list(counts.values()))
    ax.set_xlabel("faces per photo")
    ax.set_ylabel("photos")
    ax.set_title("Faces per photo")
    figures.append(("Faces per photo", _save(fig, out / "faces_per_photo.png")))

    fig, ax = plt.subplots(figsize=(5, 5))
    names = ("nose", "left eye", "right eye", "left ear", "right ear", "left shoulder", "right shoulder")
    points = np.concatenate([s["landmarks"] for s in data.values()]) * 256
    for k, name in enumerate(names):
        found = points[:, k][~np.isnan(points[:, k, 0])]
        ax.scatter(found[:, 0], found[:, 1], s=4, alpha=0.4, color=np.array(_COLORS[k]) / 255, label=name)
    ax.set_xlim(0, 256)
    ax.set_ylim(256, 0)
    ax.set_aspect("equal")
    ax.legend(fontsize=7, markerscale=3, loc="lower right")
    ax.set_title("Keypoints on the 256 x 256 crop")
    figures.append(("Keypoint heatmap", _save(fig, out / "keypoints.png")))

    attributes = [a.get("faceAttributes", {}) for s in data.values() for a in s["attributes"]]
    figures += _attribute_figures(plt, attributes, out)
    poses = [a["headPose"] for a in attributes if "headPose" in a]
    if poses:
        fig, axes = plt.subplots(1, 3, figsize=(9, 3))
        for ax, angle in zip(axes, ("yaw", "pitch", "roll")):
            ax.hist([p[angle] for p in poses], bins=30, range=(-90, 90))
            ax.set_title(angle)
            ax.set_xlabel("degrees")
        figures.append(("Head pose", _save(fig, out / "head_pose.png")))

    figures.append(("Sample crops with keypoints", _sample_grid(data, out)))
    rows = "".join(f"<tr><td>{html.escape(s)}</td><td>{len(d['meta']):,}</td></tr>" for s, d in data.items())
    body = "".join(f"<h2>{html.escape(t)}</h2><img src=\"{html.escape(src)}\" alt=\"{html.escape(t)}\">"
                   for t, src in figures)
    page = (
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>FDF dataset report</title>"
        "<style>body{font-family:sans-serif;max-width:960px;margin:2em auto}img{max-width:100%}"
        "td{padding:0 1em}</style></head><body>"
        f"<h1>Dataset report: {html.escape(str(root))}</h1><table><tr><th>split</th><th>faces</th></tr>{rows}"
        f"<tr><td>photos</td><td>{len(per_photo):,}</td></tr></table>{body}</body></html>\n"
    )
    atomic_write(out / "index.html", page)
    return out / "index.html"
