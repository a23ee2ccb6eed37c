"""YFCC100M-format records made up for the demo, the tests and the benchmarks.

They follow the real file's conventions (Flickr URL shapes, license names and
URLs, the unpadded-hex photo hash) so every reader and filter sees what it
would see in ``yfcc100m_dataset``.
"""

from __future__ import annotations

import dataclasses
import hashlib

from ..files import replacing
from ..records import Photo
from .filters import LICENSES

LICENSE_NAMES = {
    "by": "Attribution License",
    "by-sa": "Attribution-ShareAlike License",
    "by-nc": "Attribution-NonCommercial License",
    "by-nc-sa": "Attribution-NonCommercial-ShareAlike License",
    "by-nd": "Attribution-NoDerivs License",
    "by-nc-nd": "Attribution-NonCommercial-NoDerivs License",
}


def yfcc_hash(url: str) -> str:
    """YFCC100M's photo hash: md5 of the download URL with each byte written as ``%x`` (no zero padding)."""
    return "".join(f"{b:x}" for b in hashlib.md5(url.encode(), usedforsecurity=False).digest())


def synthetic_photo(index: int, *, license: str = "by", nsid: str | None = None, **overrides) -> Photo:
    """A plausible photo record; ``index`` drives the ids, ``overrides`` set any :class:`Photo` field."""
    photo_id = 2_000_000_000 + index
    server, farm, secret = str(1000 + index % 8000), str(1 + index % 9), f"{(index * 2654435761) % 16**10:010x}"
    nsid = nsid or f"{10_000_000 + index % 50_000}@N0{index % 8}"
    download_url = f"http://farm{farm}.staticflickr.com/{server}/{photo_id}_{secret}.jpg"
    fields = dict(
        line_number=index,
        photo_id=photo_id,
        photo_hash=yfcc_hash(download_url),
        user_nsid=nsid,
        user_nickname=f"user {index % 50_000}",
        date_taken="2012-06-01 12:00:00.0",
        date_uploaded=str(1_338_552_000 + index),
        capture_device="Canon EOS 5D Mark II",
        title=f"photo {index}: portrait & friends",
        description="a test photo, 100% synthetic",
        user_tags=("portrait", "people"),
        machine_tags=(),
        longitude="",
        latitude="",
        accuracy="",
        page_url=f"http://www.flickr.com/photos/{nsid}/{photo_id}/",
        download_url=download_url,
        license_name=LICENSE_NAMES[license],
        license_url=LICENSES[license],
        server_id=server,
        farm_id=farm,
        secret=secret,
        original_secret=f"{(index * 40503) % 16**10:010x}",
        original_extension="jpg",
        marker=0,
    )
    photo = Photo(**fields)
    return dataclasses.replace(photo, **overrides) if overrides else photo


#: YFCC100M's cardinalities: ~581k distinct owners, and user tags from a vocabulary of millions
YFCC_OWNERS, YFCC_TAG_VOCABULARY = 581_000, 2_000_000


def write_yfcc_file(path, lines: int, *, owners: int = YFCC_OWNERS, tags: int = YFCC_TAG_VOCABULARY) -> None:
    """A YFCC100M-format file of ``lines`` photos for benchmarks, at the real file's cardinalities: every one
    of ``owners`` distinct owners appears within the first ``owners`` lines, each photo has 0-7 user tags
    drawn from ``tags`` distinct ones; all six licenses, 1% videos, 0.5% ``no_cv`` opt-outs. Written atomically."""
    from pathlib import Path

    from .filters import LICENSES
    from .metadata import format_line

    codes = list(LICENSES)
    path = Path(path)
    with replacing(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for i in range(lines):
            owner = (i * 7_919) % owners  # 7,919 is prime, so i -> owner visits every owner once per `owners` lines
            words = tuple(f"tag{(i * 8 + j) * 2_654_435_761 % tags}" for j in range(i % 8))
            photo = synthetic_photo(i, license=codes[i % 6], marker=int(i % 100 == 0),
                                    nsid=f"{10_000_000 + owner}@N0{owner % 8}", user_nickname=f"user {owner}",
                                    user_tags=("no_cv", *words) if i % 200 == 50 else words)
            f.write(format_line(photo) + "\n")
