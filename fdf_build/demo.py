"""The offline demo: bundled real photos served as if from Flickr, described by YFCC-format metadata, built end to end.

``fdf-build demo --out DIR`` needs no network: it starts a loopback server
that serves the bundled photos under Flickr-style paths (and one removed
photo that redirects to the "photo unavailable" placeholder), writes a
matching ``DIR/demo_yfcc100m.tsv`` (with a video, a NoDerivs photo and a
``no_cv`` photo that the filters must drop), and runs the real build on it.
Two of the photos' owners hash into val, so both splits get faces. With
``--serve`` the server stays up, so every command that fetches can be tried on it.
"""

from __future__ import annotations

from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Iterator, Optional
from urllib.parse import urlsplit

from .config import BuildConfig
from .files import atomic_write
from .localserver import PLACEHOLDER_PATH, LocalServer, Redirect
from .pipeline import Summary, run_build
from .records import Photo
from .shard import Progress
from .sources.metadata import format_line
from .sources.synthetic import synthetic_photo

DEMO_LICENSES = ("by", "by-sa", "by-nc", "by-nc-sa")
#: Made-up owners whose NSIDs hash into val at the default --val-fraction (2.6% of authors, as in FDF256): at that
#: share, nine photos' owners would all but surely land in train, and the demo would show an empty val/. Choosing
#: the owners, not a demo-only split rule or fraction, keeps the demo's split exactly what a real build does.
DEMO_VAL_OWNERS = {"codait_luciano.jpg": "90000362@N00", "whitehouse_obama_biden.jpg": "90000311@N00"}


def demo_photos() -> dict[str, bytes]:
    """The bundled photos, by file name."""
    folder = resources.files("fdf_build") / "demo_data"
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir(), key=lambda p: p.name) if p.name.endswith(".jpg")}


def demo_metadata(photos: dict[str, bytes]) -> tuple[list[Photo], dict[str, object]]:
    """YFCC records for the bundled photos plus the cases the filters and fetcher must handle, and the routes to serve."""
    records, routes = [], {}
    for i, (name, data) in enumerate(photos.items()):
        stem = name.rsplit(".", 1)[0]
        photo = synthetic_photo(
            i,
            license=DEMO_LICENSES[i % len(DEMO_LICENSES)],
            nsid=DEMO_VAL_OWNERS.get(name, f"{90_000_000 + i}@N0{i % 8}"),
            title=stem.replace("_", " "),
            user_nickname=stem.split("_", 1)[0],
        )
        records.append(photo)
        routes[urlsplit(photo.download_url).path] = data
    n = len(records)
    removed = synthetic_photo(n, title="a photo its owner deleted")
    routes[urlsplit(removed.download_url).path] = Redirect(PLACEHOLDER_PATH)
    routes[PLACEHOLDER_PATH] = next(iter(photos.values()))
    records += [
        removed,
        synthetic_photo(n + 1, marker=1, title="a video"),
        synthetic_photo(n + 2, license="by-nd", title="NoDerivs: not allowed"),
        synthetic_photo(n + 3, user_tags=("portrait", "no_cv"), title="owner opted out"),
    ]
    return records, routes


@contextmanager
def demo_server(out: Path, *, port: int = 0, max_seconds: Optional[float] = 600.0) -> Iterator[tuple[str, Path]]:
    """Serve the bundled photos on 127.0.0.1 and write ``OUT/demo_yfcc100m.tsv`` describing them; yields
    (the server's URL, the metadata file) while the server is up."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records, routes = demo_metadata(demo_photos())
    tsv = out / "demo_yfcc100m.tsv"
    atomic_write(tsv, "".join(format_line(p) + "\n" for p in records))
    with LocalServer(routes, port=port, max_seconds=max_seconds) as server:
        yield server.url, tsv


def build_demo(out: Path, url: str, tsv: Path, *, progress: Optional[Progress] = None, **overrides) -> Summary:
    """The real build of the demo's metadata file, fetching from the demo server at ``url``."""
    return run_build(BuildConfig(metadata=str(tsv), out=Path(out), base_url=url, **overrides), progress)


def run_demo(out: Path, *, progress: Optional[Progress] = None, **overrides) -> tuple[Summary, Path]:
    with demo_server(out) as (url, tsv):
        return build_demo(out, url, tsv, progress=progress, **overrides), tsv

