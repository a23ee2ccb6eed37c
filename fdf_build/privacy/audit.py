"""Audit: re-check each photo's URL and find the faces whose photo was removed or made private on Flickr,
on evidence only; :func:`apply_audit` removes them through :mod:`fdf_build.privacy.removal`."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import urlsplit

from ..dataset.layout import dataset_splits
from ..dataset.metainfo import read_metainfo
from ..errors import BadInput
from ..fetch import RateLimiter
from ..records import SkipReason
from .removal import plan_removal, remove_faces

#: The only evidence that a photo is gone: Flickr's placeholder redirect (removed or private), 404 or 410.
#: 401, 403, 400, 405, 5xx, timeouts... say more about the server (a proxy, a wrong mirror) than the photo.
GONE = {SkipReason.PHOTO_REMOVED, SkipReason.HTTP_NOT_FOUND}


@dataclass
class AuditReport:
    checked: int
    gone: dict  # photo id -> reason (evidence)
    unknown: dict  # photo id -> what it answered instead ("HTTP 401", "http_timeout", ...)

    @property
    def dominant_failure(self) -> Optional[tuple[str, int]]:
        """(answer, count) when most photos checked got the same failing answer: the server is wrong.

        A non-evidence answer, or a bare 404/410: a mirror or path that is wrong answers that to every
        photo, while Flickr redirects a removed photo's image to its placeholder (never doubted).
        """
        answers = Counter(self.unknown.values())
        answers["HTTP 404/410"] = sum(why == SkipReason.HTTP_NOT_FOUND.value for why in self.gone.values())
        answer, count = answers.most_common(1)[0]
        return (answer, count) if count and count * 2 > self.checked else None


def audit(dataset: Path, fetcher, *, base_url: Optional[str] = None, rate: float = 5.0, workers: int = 4,
          progress: Optional[Callable[[str, int], None]] = None) -> AuditReport:
    """Probe every photo of the dataset once (``fetcher.probe``: no bodies) and sort them into gone / unknown.

    Only evidence counts as gone (:data:`GONE`); any other failure is unknown.
    """
    progress = progress or (lambda stage, n: None)
    urls = {}
    for _, directory in dataset_splits(dataset):
        for record in read_metainfo(directory).values():
            # the image URL where there is one: Flickr answers a gone photo's with its placeholder redirect
            url = record.download_url or record.photo_url
            if record.photo_id is not None and url:
                urls.setdefault(record.photo_id, url)
    limiter = RateLimiter(rate)  # one budget for the whole audit, whatever the hosts

    def check(item):
        photo_id, url = item
        if base_url:
            url = base_url.rstrip("/") + urlsplit(url).path
        limiter.wait()
        result = fetcher.probe(url)
        progress("photos", 1)
        return photo_id, result

    gone, unknown = {}, {}
    with ThreadPoolExecutor(workers) as pool:
        for photo_id, skip in pool.map(check, sorted(urls.items())):
            if skip is None:
                continue
            if skip.reason in GONE:
                gone[photo_id] = skip.reason.value
            else:
                unknown[photo_id] = skip.detail if skip.detail.startswith("HTTP ") else skip.reason.value
    return AuditReport(len(urls), gone, unknown)


def apply_audit(dataset: Path, report: AuditReport) -> int:
    """Remove the faces of the photos ``report`` found gone, unless the server's answers say it cannot be
    trusted; returns the number of faces removed."""
    dominant = report.dominant_failure
    if dominant is not None:
        answer, count = dominant
        raise BadInput(f"{count} of {report.checked} photos answered {answer}: the server is wrong, not the photos; "
                       "nothing removed (check --base-url, proxies and credentials)")
    mappings = remove_faces(plan_removal(dataset, photo_ids=report.gone), reason="photo no longer on Flickr (audit)")
    return sum(new is None for mapping in mappings.values() for new in mapping.values())
