"""Scanning: count what a YFCC100M metadata file holds and what the eligibility filters would keep."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, NamedTuple, Optional

from ..records import Malformed, Photo
from .filters import Eligibility
from .metadata import INT64, check_columns, photo_from_columns
from .stream import MetadataError, line_blocks

#: How many malformed lines are kept verbatim as examples; the count is always exact.
MALFORMED_EXAMPLES = 20
_MARKERS = {"0": 0, "1": 1}


@dataclass
class ScanSummary:
    lines: int = 0
    photos: int = 0
    videos: int = 0
    malformed: int = 0
    malformed_examples: list[dict] = field(default_factory=list)
    licenses: Counter = field(default_factory=Counter)
    eligible: int = 0
    rejected: Counter = field(default_factory=Counter)
    # Exact distinct counts: YFCC100M has ~581k owners, so these sets stay bounded
    # (tens of MB) however many lines are read.
    _authors: set = field(default_factory=set, repr=False)
    _eligible_authors: set = field(default_factory=set, repr=False)

    def to_dict(self) -> dict:
        return {
            "lines": self.lines,
            "photos": self.photos,
            "videos": self.videos,
            "malformed": self.malformed,
            "malformed_examples": self.malformed_examples,
            "licenses": dict(self.licenses.most_common()),
            "eligible": self.eligible,
            "rejected": dict(self.rejected.most_common()),
            "authors": len(self._authors),
            "eligible_authors": len(self._eligible_authors),
        }


class Eligible(NamedTuple):
    """An eligible line as the scan leaves it: its columns as the file has them (text still URL-encoded) and
    its checked numbers. Decoding it into a :class:`Photo` is left to whoever fetches it: a resumed build
    reads millions of lines of finished shards and needs none of them decoded."""

    columns: list[str]
    line_number: int
    photo_id: int
    marker: int

    def photo(self) -> Photo:
        return photo_from_columns(*self)


class Scanner:
    """Counts blocks of raw lines into a :class:`ScanSummary`, reading only the
    columns a count or a filter needs; the eligible lines come back as :class:`Eligible`. Each line passes :func:`~.metadata.check_columns` and :meth:`Eligibility.of_columns`,
    the rules :func:`~.metadata.parse_line` and :class:`Eligibility` apply."""

    def __init__(self, eligibility: Eligibility, summary: ScanSummary):
        self.eligibility, self.summary = eligibility, summary
        self._judge = eligibility.of_columns()
        self.index = 0  # 0-based physical index of the next line

    def count(self, block: list[str], limit: Optional[int] = None, *,
              keep: bool = True) -> list[Eligible]:
        """Count ``block``'s lines; returns the eligible ones (``keep=False``: none, for a count alone).

        With ``limit``, stops after that many eligible lines: the lines after them are not counted.
        """
        make = Eligible
        s, judge = self.summary, self._judge
        authors, eligible_authors, licenses, rejected = s._authors, s._eligible_authors, {}, {}
        eligible, taken, index, videos, malformed = [], 0, self.index, 0, 0
        low, high = INT64.start, INT64.stop
        for line in block:
            cols = line.split("\t")
            index += 1
            try:  # the common line, accepted at once; any other goes through check_columns, which says why
                if len(cols) != 25:
                    raise ValueError
                line_number, photo_id, marker = int(cols[0]), int(cols[1]), _MARKERS[cols[24]]
                if not (low <= photo_id < high and low <= line_number < high):
                    raise ValueError
            except (ValueError, KeyError):
                cols = line.rstrip("\r").split("\t")
                checked = check_columns(cols, index - 1)
                if type(checked) is Malformed:
                    malformed += 1
                    if len(s.malformed_examples) < MALFORMED_EXAMPLES:
                        s.malformed_examples.append({"line": checked.line_number, "reason": checked.reason})
                    continue
                line_number, photo_id, marker = checked
            videos += marker
            url = cols[18]
            licenses[url] = licenses.get(url, 0) + 1
            authors.add(cols[3])
            reason = judge(cols, photo_id, marker)
            if reason is None:
                taken += 1
                eligible_authors.add(cols[3])
                if keep:
                    eligible.append(make(cols, line_number, photo_id, marker))
                if taken == limit:
                    break
            else:
                rejected[reason] = rejected.get(reason, 0) + 1
        lines = index - self.index
        self.index = index
        s.lines += lines
        s.malformed += malformed
        s.videos += videos
        s.photos += lines - malformed - videos
        s.eligible += taken
        s.licenses.update(licenses)
        s.rejected.update({reason.value: n for reason, n in rejected.items()})
        return eligible


def scan_file(path, eligibility: Eligibility, summary: ScanSummary, *,
              on_bytes: Optional[Callable[[int], None]] = None) -> ScanSummary:
    """Count a whole metadata file into ``summary`` (also what was read when a :class:`MetadataError` stops it)."""
    scanner = Scanner(eligibility, summary)
    try:
        with line_blocks(path, on_bytes=on_bytes) as blocks:
            for block in blocks:
                scanner.count(block, keep=False)
    except MetadataError as e:
        e.summary = summary
        raise
    return summary
