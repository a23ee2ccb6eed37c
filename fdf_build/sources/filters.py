"""Filtering: which YFCC100M photos may enter an FDF-style dataset.

Pure predicates: a photo is eligible only if it is a photo (not a video), its
license allows derivatives (a face crop is a derivative), its owner has not
opted out with a ``no_cv`` tag, and neither owner nor photo is on the
blocklist, the file through which removal requests reach every later build.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional, Union

from ..flickr import canonical_nsid, parse_ids, read_ids
from ..records import Face, Photo, SkipReason
from .metadata import decode_tags

#: The licenses YFCC100M photos carry, by short code -> canonical license URL.
LICENSES = {
    "by": "http://creativecommons.org/licenses/by/2.0/",
    "by-sa": "http://creativecommons.org/licenses/by-sa/2.0/",
    "by-nc": "http://creativecommons.org/licenses/by-nc/2.0/",
    "by-nc-sa": "http://creativecommons.org/licenses/by-nc-sa/2.0/",
    "by-nd": "http://creativecommons.org/licenses/by-nd/2.0/",
    "by-nc-nd": "http://creativecommons.org/licenses/by-nc-nd/2.0/",
}
#: FDF256's four: the CC 2.0 licenses that allow derivatives (no NoDerivs).
DEFAULT_LICENSES = ("by", "by-sa", "by-nc", "by-nc-sa")

_OPT_OUT_TAGS = frozenset({"nocv"})
_TAG_NOISE = re.compile(r"[\s_\-]+")


@functools.lru_cache(maxsize=256)
def normalize_license_url(url: str) -> str:
    """Compare license URLs without scheme, ``www.``, case or trailing slash."""
    url = url.strip().lower()
    url = re.sub(r"^https?://", "", url)
    url = re.sub(r"^www\.", "", url)
    return url.rstrip("/")


def license_code(url: str) -> Optional[str]:
    """The short code (``by-nc``...) of a YFCC license URL, or None for anything else."""
    return _CODE_BY_URL.get(normalize_license_url(url))


_CODE_BY_URL = {normalize_license_url(u): c for c, u in LICENSES.items()}


def resolve_licenses(specs: Iterable[str]) -> frozenset[str]:
    """Turn short codes or license URLs into the set of normalized license URLs to accept."""
    out = set()
    for spec in specs:
        spec = spec.strip()
        if not spec:
            continue
        if spec.lower() in LICENSES:
            out.add(normalize_license_url(LICENSES[spec.lower()]))
        elif "/" in spec:
            out.add(normalize_license_url(spec))
        else:
            raise ValueError(f"unknown license {spec!r}; use a license URL or one of: {', '.join(LICENSES)}")
    if not out:
        raise ValueError("no license given: at least one license must be allowed")
    return frozenset(out)


@functools.lru_cache(maxsize=1 << 16)
def is_opt_out_tag(tag: str) -> bool:
    """``no_cv``, ``nocv``, ``no-cv``, ``No CV``... and machine tags such as ``flickr:no_cv`` or ``x:y=no_cv``."""
    parts = re.split(r"[:=]", tag)
    return any(_TAG_NOISE.sub("", p.lower()) in _OPT_OUT_TAGS for p in parts)


# A tag part normalises to "nocv" only if it has a "v" or "V" (no other character lowercases to one), so a tag
# column without "v", "V" or "%" (an escape) opts nothing out; one with them is searched for n, o, c, v with nothing
# but noise (or "+", an encoded space) between them, and only a column with such a run, an escape or a non-ASCII
# character is decoded and judged tag by tag.
_MAYBE_OPT_OUT = re.compile(r"%|[^\x00-\x7f]|n[\s_+\-]*o[\s_+\-]*c[\s_+\-]*v", re.IGNORECASE)


def opts_out(encoded_tags: str) -> bool:
    """Whether a tag column as the file has it (URL-encoded, comma-separated) holds an opt-out tag."""
    return (("v" in encoded_tags or "V" in encoded_tags or "%" in encoded_tags)
            and _MAYBE_OPT_OUT.search(encoded_tags) is not None
            and any(map(is_opt_out_tag, decode_tags(encoded_tags))))


@dataclass(frozen=True)
class Blocklist:
    """Owner NSIDs and photo ids whose photos never enter a build."""

    nsids: frozenset[str] = field(default_factory=frozenset)
    photo_ids: frozenset[int] = field(default_factory=frozenset)

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> "Blocklist":
        """One NSID or photo id a line; ``#`` starts a comment. All-digit entries are photo ids."""
        nsids, photo_ids = parse_ids(lines)
        return cls(frozenset(nsids), frozenset(photo_ids))

    @classmethod
    def from_file(cls, path: Union[str, Path, None]) -> "Blocklist":
        if path is None:
            return cls()
        nsids, photo_ids = read_ids(path)
        return cls(frozenset(nsids), frozenset(photo_ids))

    def __contains__(self, photo: Photo) -> bool:
        return self.blocks(photo.user_nsid, photo.photo_id)

    def blocks(self, user_nsid: Optional[str], photo_id: Optional[int]) -> bool:
        return user_nsid in self.nsids or photo_id in self.photo_ids

    def lists(self, entry: str) -> bool:
        """Whether a blocklist line's entry (an NSID, or an all-digit photo id) is on this list already."""
        return int(entry) in self.photo_ids if entry.isdigit() else canonical_nsid(entry) in self.nsids

    def __or__(self, other: "Blocklist") -> "Blocklist":
        return Blocklist(self.nsids | other.nsids, self.photo_ids | other.photo_ids)

    def __len__(self) -> int:
        return len(self.nsids) + len(self.photo_ids)


@dataclass(frozen=True)
class Eligibility:
    """The eligibility policy; call it on a photo to get None (eligible) or the reason it is not."""

    licenses: frozenset[str] = field(default_factory=lambda: resolve_licenses(DEFAULT_LICENSES))
    blocklist: Blocklist = field(default_factory=Blocklist)

    @classmethod
    def from_options(cls, licenses: Iterable[str], blocklist: Union[str, Path, None]) -> "Eligibility":
        """From license codes/URLs and a blocklist file path, as the CLI and BuildConfig hold them."""
        return cls(licenses=resolve_licenses(licenses), blocklist=Blocklist.from_file(blocklist))

    def __call__(self, photo: Photo) -> Optional[SkipReason]:
        if photo.is_video:
            return SkipReason.VIDEO
        if normalize_license_url(photo.license_url) not in self.licenses:
            return SkipReason.LICENSE_NOT_ALLOWED
        if any(map(is_opt_out_tag, photo.user_tags)) or any(map(is_opt_out_tag, photo.machine_tags)):
            return SkipReason.OPTED_OUT
        if photo in self.blocklist:
            return SkipReason.BLOCKLISTED
        return None

    def of_columns(self) -> Callable[[list[str], int, int], Optional[SkipReason]]:
        """``judge(columns, photo_id, marker)``: what calling it on the line's :class:`Photo` gives, from the
        line's columns as the file has them (tags still URL-encoded), so a scan decodes next to nothing.
        A closure over what it reads, as it runs once a line of a 100M-line file."""
        licenses, nsids, photo_ids, allowed = self.licenses, self.blocklist.nsids, self.blocklist.photo_ids, {}
        video, license_not_allowed = SkipReason.VIDEO, SkipReason.LICENSE_NOT_ALLOWED
        opted_out, blocklisted = SkipReason.OPTED_OUT, SkipReason.BLOCKLISTED
        maybe_opt_out = _MAYBE_OPT_OUT.search

        def judge(cols: list[str], photo_id: int, marker: int) -> Optional[SkipReason]:
            if marker:
                return video
            url = cols[18]
            ok = allowed.get(url)
            if ok is None:
                ok = normalize_license_url(url) in licenses
                if len(allowed) < 1024:  # YFCC100M has 6 license URLs; a hostile file cannot grow this
                    allowed[url] = ok
            if not ok:
                return license_not_allowed
            tags = cols[10] + cols[11]
            if ("v" in tags or "V" in tags or "%" in tags) and maybe_opt_out(tags) and (
                    opts_out(cols[10]) or opts_out(cols[11])):
                return opted_out
            if cols[3] in nsids or photo_id in photo_ids:
                return blocklisted
            return None

        return judge


def face_large_enough(face: Face, min_face: int) -> bool:
    """FDF drops faces narrower or shorter than ``min_face`` px in the original photo: upsampling a
    smaller face to 256 px would invent detail a generator then learns as if it were real."""
    return face.width >= min_face and face.height >= min_face
