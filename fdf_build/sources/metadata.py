"""Source reading: stream YFCC100M metadata lines into :class:`~fdf_build.records.Photo` records.

The real ``yfcc100m_dataset`` file has ~100M lines (49 GB uncompressed), so
everything here is a generator over a stream (:mod:`.stream`): memory does not
depend on the file's length.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Union
from urllib.parse import quote_plus, unquote, urlsplit

from ..records import Malformed, Photo
from .stream import line_blocks

#: Column names of the 25-column release, in file order.
COLUMNS = (
    "line_number",
    "photo_id",
    "photo_hash",
    "user_nsid",
    "user_nickname",
    "date_taken",
    "date_uploaded",
    "capture_device",
    "title",
    "description",
    "user_tags",
    "machine_tags",
    "longitude",
    "latitude",
    "accuracy",
    "page_url",
    "download_url",
    "license_name",
    "license_url",
    "server_id",
    "farm_id",
    "secret",
    "original_secret",
    "original_extension",
    "marker",
)
#: The older Yahoo Webscope release lacks the line number and the hash.
WEBSCOPE_COLUMNS = tuple(c for c in COLUMNS if c not in ("line_number", "photo_hash"))
_ENCODED = frozenset({"user_nickname", "capture_device", "title", "description"})
_TAG_COLUMNS = frozenset({"user_tags", "machine_tags"})

#: Flickr size suffixes that can be rebuilt from farm/server/id/secret (long side in px).
FLICKR_SIZES = {"z": 640, "c": 800, "b": 1024, "o": None}


def source_size(path: Union[str, Path]) -> Optional[int]:
    """Size in bytes of a metadata source, or None for stdin (unknown length)."""
    return None if str(path) == "-" else os.path.getsize(path)


@contextmanager
def open_metadata(path: Union[str, Path], *, on_bytes: Optional[Callable[[int], None]] = None) -> Iterator[Iterator[str]]:
    """The lines of a plain, bz2 or gzip metadata file (or ``-`` for stdin), without their newline;
    see :func:`~fdf_build.sources.stream.line_blocks`."""
    with line_blocks(path, on_bytes=on_bytes) as blocks:
        yield itertools.chain.from_iterable(blocks)


def _unquote(value: str) -> str:
    """``unquote_plus`` that skips the work for fields with nothing encoded, the common case."""
    if "+" in value:
        value = value.replace("+", " ")
    return unquote(value) if "%" in value else value


# Tags repeat heavily across YFCC100M, so decoding each distinct one once pays off.
_unquote_tag = functools.lru_cache(maxsize=1 << 16)(_unquote)


def decode_tags(value: str) -> tuple[str, ...]:
    return tuple(_unquote_tag(t) for t in value.split(",") if t)


#: SQLite's INTEGER, what the search index stores ids in: a longer id is a malformed line, not an overflow later
INT64 = range(-(1 << 63), 1 << 63)
_DIGITS = re.compile(r"\s*[+-]?\d+\s*")


def _integer(text: str, what: str) -> Union[int, str]:
    """``int(text)``, or why the line is malformed."""
    try:
        value = int(text)
    except ValueError:
        if not _DIGITS.fullmatch(text):
            return f"non-numeric {what} {_shown(text)}"
        value = None  # more digits than int() takes
    if value is None or value not in INT64:
        return f"{what} {_shown(text)} does not fit in 64 bits"
    return value


def _shown(text: str) -> str:
    return repr(text) if len(text) <= 40 else f"{text[:20]!r}...({len(text):,} characters)"


def check_columns(cols: list[str], physical_index: int) -> Union[tuple[int, int, int], Malformed]:
    """The rules every line must pass: 25 columns (or the 23 of the Webscope release, which ``cols`` is filled
    out from: no hash, ``physical_index`` as its line number), integer line number and photo id within 64
    bits, marker 0 or 1. Returns (line number, photo id, marker) or why the line is malformed."""
    if len(cols) == len(WEBSCOPE_COLUMNS):
        cols[1:1] = [""]  # no photo hash
        cols.insert(0, str(physical_index))
    elif len(cols) != len(COLUMNS):
        return Malformed(physical_index + 1, f"expected {len(COLUMNS)} columns, got {len(cols)}")
    line_number = _integer(cols[0], "line number")
    if isinstance(line_number, str):
        return Malformed(physical_index + 1, line_number)
    photo_id = _integer(cols[1], "photo id")
    if isinstance(photo_id, str):
        return Malformed(physical_index + 1, photo_id)
    marker = cols[24]
    if marker not in ("0", "1"):
        return Malformed(physical_index + 1, f"marker must be 0 or 1, got {_shown(marker)}")
    return line_number, photo_id, 1 if marker == "1" else 0


def photo_from_columns(cols: list[str], line_number: int, photo_id: int, marker: int) -> Photo:
    """The :class:`Photo` of a line's columns once :func:`check_columns` passed them."""
    return Photo(
        line_number,
        photo_id,
        cols[2],
        cols[3],
        _unquote(cols[4]),
        cols[5],
        cols[6],
        _unquote(cols[7]),
        _unquote(cols[8]),
        _unquote(cols[9]),
        decode_tags(cols[10]),
        decode_tags(cols[11]),
        *cols[12:24],
        marker,
    )


def parse_line(line: str, physical_index: int) -> Union[Photo, Malformed]:
    """Parse one tab-separated line.

    ``physical_index`` (0-based) numbers Webscope lines, which carry no line
    number of their own. A :class:`Malformed` result names the 1-based line of
    the file (what ``sed -n Np`` prints), whatever the line's own columns say.
    """
    cols = line.rstrip("\r\n").split("\t")
    checked = check_columns(cols, physical_index)
    return checked if isinstance(checked, Malformed) else photo_from_columns(cols, *checked)


def read_photos(lines: Iterable[str]) -> Iterator[Union[Photo, Malformed]]:
    """Yield one Photo or Malformed per input line, in order."""
    for index, line in enumerate(lines):
        yield parse_line(line, index)


def format_line(photo: Photo) -> str:
    """The 25-column line for ``photo`` (no newline), the inverse of :func:`parse_line`.

    Used to write demo and test inputs in the exact format of the real file.
    """
    out = []
    for name in COLUMNS:
        value = getattr(photo, name)
        if name in _ENCODED:
            value = quote_plus(value)
        elif name in _TAG_COLUMNS:
            value = ",".join(quote_plus(t) for t in value)
        out.append(str(value))
    return "\t".join(out)


def photo_url(photo: Photo, *, size: Optional[str] = None, base_url: Optional[str] = None) -> str:
    """The URL to fetch ``photo`` from.

    ``size=None`` keeps YFCC's download URL (Flickr's 500 px "medium" image);
    ``z``/``c``/``b`` rebuild Flickr's static URL for a 640/800/1024 px long
    side, ``o`` the original with its own secret and extension. ``base_url``
    replaces scheme and host and keeps the path (``/<server>/<id>_<secret>[_<size>].<ext>``),
    which is how a mirror or a local test server is addressed.
    """
    if size is None:
        url = photo.download_url
    elif size == "o":
        url = (
            f"https://farm{photo.farm_id}.staticflickr.com/{photo.server_id}/"
            f"{photo.photo_id}_{photo.original_secret}_o.{photo.original_extension}"
        )
    elif size in FLICKR_SIZES:
        url = (
            f"https://farm{photo.farm_id}.staticflickr.com/{photo.server_id}/"
            f"{photo.photo_id}_{photo.secret}_{size}.jpg"
        )
    else:
        raise ValueError(f"unknown Flickr size {size!r}; choose one of {sorted(FLICKR_SIZES)} or None")
    if base_url:
        url = base_url.rstrip("/") + urlsplit(url).path
    return url
