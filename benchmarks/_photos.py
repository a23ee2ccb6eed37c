"""Shared by the build and rehydrate benchmarks: the bundled demo photos, repeated, as YFCC records and the
local-server routes that serve them under their Flickr-style paths."""

from __future__ import annotations

from urllib.parse import urlsplit

from fdf_build.demo import demo_photos
from fdf_build.records import Photo
from fdf_build.sources.synthetic import synthetic_photo


def served_demo_photos(copies: int) -> tuple[list[Photo], dict[str, bytes]]:
    records, routes = [], {}
    for i, data in enumerate(list(demo_photos().values()) * copies):
        photo = synthetic_photo(i)
        records.append(photo)
        routes[urlsplit(photo.download_url).path] = data
    return records, routes
