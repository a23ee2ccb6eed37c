"""Flickr's identifiers: photo ids in any URL of a photo, page URLs, lists of owner NSIDs and photo ids.

Stdlib only, like everything ``search_username.py`` imports: it must start without numpy.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Optional, Union
from urllib.parse import urlsplit

from .errors import BadInput

_BASE58 = "123456789abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ"
_STATIC = re.compile(r"/(\d+)_[0-9a-f]+(?:_[a-z0-9]+)?\.[a-z]+$", re.I)
_PAGE = re.compile(r"/photos/[^/]+/(\d+)(?:/|$)")


def photo_id_from_url(url: str) -> Optional[int]:
    """The photo id in any Flickr URL of a photo: page URL, static URL of any size, or flic.kr short link."""
    if not url:
        return None
    parts = urlsplit(url.strip() if "://" in url else "https://" + url.strip())
    host, path = parts.netloc.lower(), parts.path
    if host.endswith("flic.kr"):
        m = re.match(r"/p/([1-9a-km-zA-HJ-NP-Z]+)", path)
        if not m:
            return None
        number = 0
        for ch in m.group(1):
            number = number * 58 + _BASE58.index(ch)
        return number
    m = _PAGE.search(path) if "flickr.com" in host and "staticflickr" not in host else _STATIC.search(path)
    return int(m.group(1)) if m else None


def is_page_url(url: str) -> bool:
    """A Flickr photo page (``flickr.com/photos/<user>/<id>/`` or a flic.kr short link), not a static image URL."""
    parts = urlsplit(url.strip() if "://" in url else "https://" + url.strip())
    host = parts.netloc.lower()
    if host.endswith("flic.kr"):
        return True
    return "flickr.com" in host and "staticflickr" not in host and bool(_PAGE.search(parts.path))


def page_url(user: str, photo_id: int) -> str:
    """The photo's Flickr page, which Flickr serves for the owner's NSID as well as their alias."""
    return f"http://www.flickr.com/photos/{user}/{photo_id}/"


def canonical_nsid(nsid: str) -> str:
    """An owner's NSID as Flickr writes it (``12345678@N00``), however it was typed (``12345678@n00``): the form
    every comparison uses (search, removal, blocklists), so a lower-case ``@n`` never lets a face through."""
    number, at, suffix = nsid.strip().rpartition("@")
    return f"{number}@{suffix.upper()}" if at else nsid.strip()
#: Flickr's ids are 64-bit integers (11 digits today); more digits are not a photo id
MAX_ID_DIGITS = 19


def parse_ids(lines: Iterable[str]) -> tuple[set[str], set[int]]:
    """(NSIDs, photo ids) of a blocklist-style file: one a line, ``#`` comments, all-digit entries are photo ids.

    NSIDs come back in :func:`canonical_nsid` form. A line that cannot be either (a control character, a photo id
    beyond 64 bits) is a ``ValueError`` naming it.
    """
    nsids, photo_ids = set(), set()
    for number, line in enumerate(lines, start=1):
        entry = line.split("#", 1)[0].strip()
        if entry.isascii() and entry.isdigit():
            if len(entry.lstrip("0")) > MAX_ID_DIGITS or int(entry) >= 1 << 63:
                raise ValueError(f"line {number}: {entry[:30]}... is not a photo id (beyond 64 bits)")
            photo_ids.add(int(entry))
        elif entry:
            if not entry.isprintable() or any(c.isspace() for c in entry):
                raise ValueError(f"line {number}: {entry[:30]!r} is neither an NSID nor a photo id")
            nsids.add(canonical_nsid(entry))
    return nsids, photo_ids


def read_ids(path: Union[str, Path]) -> tuple[set[str], set[int]]:
    """:func:`parse_ids` of a file (a blocklist, ``--nsid-file``); one that is not a text file of ids is bad input."""
    try:
        with open(path, encoding="utf-8") as f:
            return parse_ids(f)
    except UnicodeDecodeError as e:
        raise BadInput(f"{path}: not a text file of NSIDs and photo ids (byte {e.start} is not UTF-8)") from None
    except ValueError as e:
        raise BadInput(f"{path}: not a file of NSIDs and photo ids ({e})") from None
    except OSError as e:
        raise BadInput(f"{path}: cannot be read ({e.strerror})") from None
