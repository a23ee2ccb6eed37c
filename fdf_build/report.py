"""Report: one self-contained HTML page describing a dataset in the FDF layout, for its maintainer to publish.

``make_report(root, out)`` writes ``out/index.html`` and nothing else: every chart and thumbnail is inlined, so
the file can be mailed or hosted alone. On top, the numbers of the dataset card (:mod:`fdf_build.card`, the same
facts); then the split and license tables, the charts in a grid (licenses, splits, face sizes, faces per photo,
keypoints, and the attribute distributions once ``fdf-build attributes`` ran), the groups of near-duplicate
faces with thumbnails, and a grid of sample crops with their keypoints, in whole rows.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from . import __version__
from .card import facts as card_facts
from .dataset.duplicates import find_duplicates
from .dataset.layout import PHASH, dataset_splits, read_image
from .dataset.loaders import load_array
from .dataset.metainfo import read_metainfo
from .dataset.writer import encode_png, read_attributes
from .files import atomic_write

_COLORS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240)]
KEYPOINT_NAMES = ("nose", "left eye", "right eye", "left ear", "right ear", "left shoulder", "right shoulder")
SPLIT_COLORS = {"train": "#2f6db5", "val": "#e07b24"}
#: sample crops shown: whole rows of at most COLUMNS, never a padding tile
COLUMNS, SAMPLE_ROWS = 8, 3
#: near-duplicate groups shown with thumbnails (the largest first)
SHOWN_GROUPS = 12

_CSS = """
*{box-sizing:border-box}body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:#1d2733;background:#f4f6f9}main{max-width:1240px;margin:0 auto;padding:28px 24px 48px}
header h1{margin:0;font-size:28px}header p{margin:4px 0 0;color:#5b6775}
h2{font-size:19px;margin:34px 0 12px}.stats{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));
gap:12px;margin-top:22px}.stat{background:#fff;border-radius:10px;padding:14px 16px;box-shadow:0 1px 3px #0002}
.stat b{display:block;font-size:26px;line-height:1.2}.stat span{color:#5b6775;font-size:13px}
.tables{display:grid;grid-template-columns:repeat(auto-fit,minmax(380px,1fr));gap:18px;align-items:start}
table{width:100%;border-collapse:collapse;background:#fff;border-radius:10px;overflow:hidden;box-shadow:0 1px 3px #0002}
th,td{padding:7px 12px;text-align:left;border-bottom:1px solid #e6e9ee}th{background:#eef1f5;font-weight:600}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}tr:last-child td{border-bottom:0}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(480px,1fr));gap:18px}
figure{margin:0;background:#fff;border-radius:10px;padding:12px;box-shadow:0 1px 3px #0002}
figure img{width:100%;height:auto;display:block}figcaption{font-weight:600;margin-bottom:6px}
.samples{display:grid;grid-template-columns:repeat(var(--cols),1fr);gap:6px}
.samples figure,.group figure{padding:4px;text-align:center;font-size:12px;color:#5b6775}
.groups{display:grid;grid-template-columns:repeat(auto-fill,minmax(280px,1fr));gap:12px}
.group{display:flex;flex-wrap:wrap;gap:6px;background:#fff;border-radius:10px;padding:10px 12px;
box-shadow:0 1px 3px #0002}.group figure{box-shadow:none;width:104px}
.group .why{flex-basis:100%;color:#5b6775;font-size:13px}.span{color:#b3261e;font-weight:600}
.note{color:#5b6775}
"""


def _figure():
    import matplotlib

    matplotlib.use("Agg")  # no display: reports are made on servers
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 11, "axes.spines.top": False, "axes.spines.right": False})
    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    _figure().close(fig)
    return buf.getvalue()


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _load(root: Path) -> dict:
    data = {}
    for split, directory in dataset_splits(root):
        meta = read_metainfo(directory)
        data[split] = {
            "dir": directory,
            "meta": meta,
            "landmarks": load_array(directory, "landmarks.npy", shape=(len(meta), 7, 2)),
            "attributes": read_attributes(directory, len(meta)) or [],
        }
    return data


def _thumbnail(split: dict, number: int, size: int = 128, keypoints: bool = True) -> str:
    image = cv2.cvtColor(read_image(split["dir"], number), cv2.COLOR_RGB2BGR)
    side = image.shape[0]
    for k, (x, y) in enumerate(split["landmarks"][number] if keypoints else ()):
        if not np.isnan(x):
            cv2.circle(image, (int(x * side), int(y * side)), max(2, side // 64), _COLORS[k][::-1], -1)
    small = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return _data_uri(encode_png(cv2.cvtColor(small, cv2.COLOR_BGR2RGB)))


def _samples(data: dict) -> tuple[int, list[tuple[str, int]]]:
    """(columns, faces): whole rows only, faces spread evenly over each split in proportion to its size."""
    total = sum(len(s["meta"]) for s in data.values())
    columns = min(COLUMNS, total)
    count = min(total, COLUMNS * SAMPLE_ROWS) // columns * columns if columns else 0
    chosen = []
    for split, s in data.items():
        n = len(s["meta"])
        share = round(count * n / total) if split != list(data)[-1] else count - len(chosen)
        chosen += [(split, int(i)) for i in np.linspace(0, n - 1, min(n, share), dtype=int)] if n else []
    return columns, chosen[:count]


def _bar(plt, title: str, labels, values, *, horizontal=False, colors=None, xlabel="", ylabel="faces"):
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    if horizontal:
        ax.barh(labels, values, color=colors or "#2f6db5")
        ax.invert_yaxis()
        ax.set_xlabel(ylabel)
    else:
        ax.bar(labels, values, color=colors or "#2f6db5")
        ax.set_ylabel(ylabel)
        ax.set_xlabel(xlabel)
        if max((len(str(label)) for label in labels), default=0) > 8:
            ax.tick_params(axis="x", labelrotation=25)
    return title, _png(fig)


def _hist(plt, title: str, values, *, bins, xlabel: str, value_range=None, ylabel="faces"):
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    ax.hist(values, bins=bins, range=value_range, color="#2f6db5", edgecolor="white")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return title, _png(fig)


def _charts(data: dict) -> list[tuple[str, bytes]]:
    plt = _figure()
    metas = [m for split in data.values() for m in split["meta"].values()]
    licenses = Counter(m.license or "(none)" for m in metas).most_common()
    charts = [
        _bar(plt, "Faces per license", [k for k, _ in licenses], [v for _, v in licenses], horizontal=True),
        _bar(plt, "Faces per split", list(data), [len(s["meta"]) for s in data.values()],
             colors=[SPLIT_COLORS.get(s, "#888") for s in data]),
    ]
    sizes = [max(b[2] - b[0], b[3] - b[1]) for m in metas if (b := m.original_bounding_box)]
    charts.append(_hist(plt, "Face size in the original photo", sizes, bins=min(40, max(5, len(sizes) // 4)),
                        xlabel="pixels (the larger of width and height)"))
    per_photo = Counter(Counter(m.photo_id or m.photo_url for m in metas).values())
    charts.append(_bar(plt, "Faces per photo", [f"{k} face{'s' * (k > 1)}" for k in sorted(per_photo)],
                       [per_photo[k] for k in sorted(per_photo)], ylabel="photos"))
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    points = np.concatenate([s["landmarks"] for s in data.values()]) * 256
    for k, name in enumerate(KEYPOINT_NAMES):
        found = points[:, k][~np.isnan(points[:, k, 0])]
        ax.scatter(found[:, 0], found[:, 1], s=6, alpha=0.5, color=np.array(_COLORS[k]) / 255, label=name)
    ax.set(xlim=(0, 256), ylim=(256, 0), aspect="equal")
    ax.legend(fontsize=8, markerscale=2, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    charts.append(("Keypoints on the 256 x 256 crop", _png(fig)))
    attributes = [a.get("faceAttributes", {}) for s in data.values() for a in s["attributes"]]
    return charts + _attribute_charts(plt, attributes)


def _attribute_charts(plt, attributes: list[dict]) -> list[tuple[str, bytes]]:
    """Age, gender, most likely emotion, smile and head pose, for the fields ``attributes`` wrote."""
    charts = []
    ages = [a["age"] for a in attributes if a.get("age") is not None]
    if ages:
        charts.append(_hist(plt, "Estimated age", ages, bins=range(0, 101, 5), xlabel="years"))
    for title, key, value in (("Gender", "gender", lambda a: a["gender"]),
                              ("Most likely emotion", "emotion", lambda a: max(a["emotion"], key=a["emotion"].get))):
        counts = Counter(value(a) for a in attributes if a.get(key) is not None).most_common()
        if counts:
            charts.append(_bar(plt, title, [k for k, _ in counts], [v for _, v in counts]))
    smiles = [a["smile"] for a in attributes if a.get("smile") is not None]
    if smiles:
        charts.append(_hist(plt, "Smile", smiles, bins=20, value_range=(0, 1), xlabel="smile (0-1)"))
    poses = [a["headPose"] for a in attributes if a.get("headPose") is not None]
    if poses:
        fig, axes = plt.subplots(1, 3, figsize=(5.6, 3.4), sharey=True)
        for ax, angle in zip(axes, ("yaw", "pitch", "roll")):
            ax.hist([p[angle] for p in poses], bins=24, range=(-90, 90), color="#2f6db5", edgecolor="white")
            ax.set_xlabel(f"{angle} (degrees)")
        axes[0].set_ylabel("faces")
        charts.append(("Head pose", _png(fig)))
    return charts


def _table(header: list[str], rows: list[list], numeric_from: int = 1) -> str:
    def cell(tag, i, value):
        numeric = ' class="n"' if i >= numeric_from else ""
        return f"<{tag}{numeric}>{value}</{tag}>"
    head = "".join(cell("th", i, html.escape(h)) for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _duplicates(root: Path, data: dict) -> str:
    if not all((s["dir"] / PHASH).is_file() for s in data.values()):
        return ("<p class=\"note\">No <code>phash.npy</code> here (not a build of fdf_build): "
                "<code>fdf-build duplicates DATASET</code> hashes the images and lists the groups.</p>")
    groups = find_duplicates(root)
    if not groups:
        return "<p class=\"note\">No two faces are near-identical.</p>"
    spanning = sum(len(g.splits) > 1 for g in groups)
    rows = []
    for k, group in enumerate(groups[:SHOWN_GROUPS], 1):
        span = "<span class=\"span\">in train and val</span>" if len(group.splits) > 1 else group.splits[0]
        tiles = "".join(f"<figure><img src=\"{_thumbnail(data[s], n, 96, keypoints=False)}\" width=\"96\" "
                        f"height=\"96\" alt=\"{s} {n}\"><div>{s}/{n}</div></figure>" for s, n in group.faces)
        rows.append(f"<div class=\"group\"><div class=\"why\">group {k}: {len(group.faces)} faces, up to "
                    f"{group.distance} bits apart; {span}</div>{tiles}</div>")
    more = f"<p class=\"note\">and {len(groups) - SHOWN_GROUPS:,} more.</p>" if len(groups) > SHOWN_GROUPS else ""
    return (f"<p>{len(groups):,} groups of near-identical faces ({sum(len(g.faces) for g in groups):,} faces), "
            f"{spanning:,} of them in both splits. <code>fdf-build build ... --dedup</code> keeps one face of each."
            f"</p><div class=\"groups\">{''.join(rows)}</div>{more}")


def make_report(root: Path, out: Path) -> Path:
    """Write ``out/index.html``, self-contained; returns its path. Attribute charts appear once ``attributes`` ran."""
    root, out = Path(root), Path(out)
    data = _load(root)
    f = card_facts(root)
    total = f["total"]
    stats = [(f"{total['faces']:,}", "faces"), (f"{total['photos']:,}", "photos"), (f"{total['owners']:,}", "owners")]
    stats += [(f"{s['faces']:,}", f"{split} faces") for split, s in f["splits"].items()]
    stats.append((f"{len(f['licenses'])}", "licenses"))
    if f["removed"]:
        stats.append((f"{f['removed']:,}", "faces removed on request"))
    split_rows = [[html.escape(s), f"{v['faces']:,}", f"{v['photos']:,}", f"{v['owners']:,}"]
                  for s, v in f["splits"].items()]
    license_rows = [[f"<a href=\"{html.escape(url)}\">{html.escape(name or url)}</a>" if url else html.escape(name)]
                    + [f"{f['splits'][s]['licenses'].get((name, url), 0):,}" for s in f["splits"]] + [f"{n:,}"]
                    for (name, url), n in sorted(f["licenses"].items(), key=lambda kv: -kv[1])]
    columns, samples = _samples(data)
    tiles = "".join(f"<figure><img src=\"{_thumbnail(data[s], n)}\" width=\"128\" height=\"128\" alt=\"{s} {n}\">"
                    f"<div>{s}/{n}</div></figure>" for s, n in samples)
    charts = "".join(f"<figure><figcaption>{html.escape(t)}</figcaption><img src=\"{_data_uri(png)}\" "
                     f"alt=\"{html.escape(t)}\"></figure>" for t, png in _charts(data))
    name = html.escape(f["name"])
    page = (
        f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" "
        f"content=\"width=device-width,initial-scale=1\"><title>{name}: dataset report</title><style>{_CSS}</style>"
        f"</head><body><main><header><h1>{name}</h1><p>FDF-style face dataset from YFCC100M: report made by "
        f"fdf_build {__version__} on {_dt.date.today().isoformat()}; its card is README.md.</p></header>"
        "<section class=\"stats\">" + "".join(f"<div class=\"stat\"><b>{v}</b><span>{html.escape(k)}</span></div>"
                                              for v, k in stats) + "</section>"
        "<h2>Splits and licenses</h2><div class=\"tables\">"
        + _table(["split", "faces", "photos", "owners"], split_rows)
        + _table(["license", *f["splits"], "total"], license_rows) + "</div>"
        f"<h2>Distributions</h2><div class=\"charts\">{charts}</div>"
        f"<h2>Near-duplicates</h2>{_duplicates(root, data)}"
        f"<h2>Sample crops with keypoints</h2><div class=\"samples\" style=\"--cols:{columns}\">{tiles}</div>"
        "</main></body></html>\n"
    )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "index.html", page)
    return out / "index.html"
