"""Scanning: count what a YFCC100M metadata file holds and what the eligibility filters would keep."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Union

from ..records import Malformed, Photo
from .filters import Eligibility

#: How many malformed lines are kept verbatim as examples; the count is always exact.
MALFORMED_EXAMPLES = 20


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

    def add(self, item: Union[Photo, Malformed], reason) -> None:
        self.lines += 1
        if isinstance(item, Malformed):
            self.malformed += 1
            if len(self.malformed_examples) < MALFORMED_EXAMPLES:
                self.malformed_examples.append({"line": item.line_number, "reason": item.reason})
            return
        if item.is_video:
            self.videos += 1
        else:
            self.photos += 1
        self.licenses[item.license_url] += 1
        self._authors.add(item.user_nsid)
        if reason is None:
            self.eligible += 1
            self._eligible_authors.add(item.user_nsid)
        else:
            self.rejected[reason.value] += 1

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


def scan(items: Iterable[Union[Photo, Malformed]], eligibility: Eligibility) -> ScanSummary:
    summary = ScanSummary()
    for item in items:
        summary.add(item, None if isinstance(item, Malformed) else eligibility(item))
    return summary
