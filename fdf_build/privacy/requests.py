"""Removal requests from photo owners: one free-text query parsed as the CLI search would take it, a queue of
requests in ``DATASET/removal-requests.jsonl``, and applying that queue through :mod:`fdf_build.privacy.removal`.

The queue is append-only: the owner page appends one ``{"request": ...}`` line per request, and applying the
queue appends one ``{"done": ...}`` line per request it applied. A request is pending while no ``done`` line
names it. Nothing is ever rewritten, so the page may keep appending while a maintainer applies the queue.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import unicodedata
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

from ..errors import BadInput
from ..dataset.layout import REQUESTS
from ..files import appending
from ..flickr import canonical_nsid, photo_id_from_url
from .index import search
from .removal import RemovalPlan, plan_removal, remove_faces

try:
    import fcntl
except ImportError:  # Windows: appends are still one write each, only not locked against each other
    fcntl = None

REQUESTS_FILE = REQUESTS
MAX_QUERY = 1000  # the longest Flickr photo URL with its query string is far shorter
MAX_CONTACT = 254  # the longest e-mail address SMTP allows
MAX_REASON = 2000
_NSID = re.compile(r"[0-9]{1,20}@N[0-9]{2}", re.I)
_PHOTO_ID = re.compile(r"[0-9]{1,15}")  # Flickr ids have 11 digits today; more cannot be a photo
_PROFILE = re.compile(r"/photos/([0-9]{1,20}@N[0-9]{2})(?:/|$)", re.I)
_CONTACT = re.compile(r"[^@\s]+@[^@\s]+")
HOW_TO_ASK = ("Enter your Flickr NSID (like 12345678@N00), a photo id (like 2899406734) or the address of one of "
              "your photos (its page, the image itself or a flic.kr/p/... link).")


class BadRequest(ValueError):
    """A query or request that cannot be taken: the message says what to enter instead."""


def unprintable(text: str, *, allow: str = "") -> list[str]:
    """The characters of ``text`` that would act on a terminal rather than show (controls, escapes, bidi
    overrides, line separators), but those in ``allow``."""
    return [c for c in text if c not in allow and unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co")]


@dataclass(frozen=True)
class Query:
    """What one typed query asks for, in the terms of :func:`fdf_build.privacy.index.search`."""

    text: str
    nsids: tuple[str, ...] = ()
    photo_ids: tuple[int, ...] = ()


def parse_query(text: str) -> Query:
    """An NSID, a photo id, or any Flickr URL of a photo (page, static image, flic.kr) or of an NSID's photostream.

    NSIDs are matched as Flickr writes them (``@N`` upper case), whatever case was typed.
    """
    text = (text or "").strip()
    if not text:
        raise BadRequest(HOW_TO_ASK)
    if len(text) > MAX_QUERY:
        raise BadRequest(f"That is longer than {MAX_QUERY} characters. {HOW_TO_ASK}")
    if unprintable(text):
        raise BadRequest(f"That holds control characters. {HOW_TO_ASK}")
    if _NSID.fullmatch(text):
        return Query(text, nsids=(canonical_nsid(text),))
    if _PHOTO_ID.fullmatch(text):
        return Query(text, photo_ids=(int(text),))
    try:
        photo_id = photo_id_from_url(text)
    except ValueError:  # a flic.kr code with a letter outside Flickr's base58 alphabet
        photo_id = None
    if photo_id is not None and _PHOTO_ID.fullmatch(str(photo_id)):
        return Query(text, photo_ids=(photo_id,))
    parts = urlsplit(text if "://" in text else "https://" + text)
    profile = _PROFILE.match(parts.path) if parts.netloc.lower().endswith("flickr.com") else None
    if profile:
        return Query(text, nsids=(canonical_nsid(profile.group(1)),))
    raise BadRequest(f"No NSID or Flickr photo found in that. {HOW_TO_ASK}")


@dataclass(frozen=True)
class Request:
    """One owner's request: the query, how to reach them, why; ``faces_found`` is what search found when it came."""

    query: Query
    contact: str
    reason: str = ""
    faces_found: int = 0
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    date: str = field(default_factory=lambda: _now())

    @classmethod
    def from_form(cls, query: Query, contact: str, reason: str, faces_found: int = 0) -> "Request":
        """Validate what the page's form sent besides its query (raises :class:`BadRequest`)."""
        contact, reason = (contact or "").strip(), (reason or "").strip()
        if not _CONTACT.fullmatch(contact) or len(contact) > MAX_CONTACT or unprintable(contact):
            raise BadRequest("Give an e-mail address the maintainer can write to, to confirm the request.")
        if len(reason) > MAX_REASON:
            raise BadRequest(f"The reason is longer than {MAX_REASON} characters.")
        if unprintable(reason, allow="\r\n\t"):
            raise BadRequest("The reason holds control characters; write it as plain text.")
        return cls(query, contact, reason, faces_found)

    def to_json(self) -> dict:
        return {"request": self.id, "date": self.date, "query": self.query.text, "nsids": list(self.query.nsids),
                "photo_ids": list(self.query.photo_ids), "contact": self.contact, "reason": self.reason,
                "faces_found": self.faces_found}

    @classmethod
    def from_json(cls, row: dict) -> "Request":
        query = Query(str(row["query"]), tuple(map(str, row.get("nsids", ()))),
                      tuple(int(p) for p in row.get("photo_ids", ())))
        if not query.nsids and not query.photo_ids:
            raise ValueError("asks for no NSID and no photo id")
        return cls(query, str(row.get("contact", "")), str(row.get("reason", "")), int(row.get("faces_found", 0)),
                   str(row["request"]), str(row.get("date", "")))


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def append_request(path: Path, request: Request) -> None:
    with appending(path, lock=True) as f:
        f.write(json.dumps(request.to_json(), ensure_ascii=False) + "\n")


@dataclass
class Queue:
    pending: list[Request]
    done: int  # requests already applied
    malformed: list[str]  # "line N: why", counted and reported, never fatal


def read_queue(path: Path) -> Queue:
    """Pending requests in the order they came. An unterminated last line is an append in progress: not read."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return Queue([], 0, [])
    lines = text.split("\n")[:-1]  # the part after the last newline is not a complete line yet
    requests, done, malformed = {}, set(), []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if "done" in row:
                done.add(str(row["done"]))
            else:
                request = Request.from_json(row)
                requests.setdefault(request.id, request)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            malformed.append(f"line {number}: {e}")
    pending = [r for r in requests.values() if r.id not in done]
    return Queue(pending, len(requests) - len(pending), malformed)


@dataclass
class Applied:
    requests: list[Request]
    faces: dict  # request id -> [Match] of that request's faces before the removal (removed unless a dry run)
    plan: Optional[RemovalPlan]
    malformed: list[str]
    already_done: int


def apply_requests(dataset: Path, path: Path, *, dry_run: bool = False) -> Applied:
    """Remove the faces of every pending request in one removal (one renumbering), then mark each request done.

    A crash between the removal and the marks leaves the requests pending; applying again finds none of their
    faces, only repeats their blocklist lines, and marks them done.
    """
    queue = read_queue(path)
    if queue.malformed and not queue.pending and not queue.done:
        raise BadInput(f"{path}: no line of it is a removal request ({queue.malformed[0]}); give the queue "
                       "`fdf-build serve` writes")
    if not queue.pending:
        return Applied([], {}, None, queue.malformed, queue.done)
    faces = {r.id: search(dataset, nsids=r.query.nsids, photo_ids=r.query.photo_ids) for r in queue.pending}
    nsids = {n for r in queue.pending for n in r.query.nsids}
    photo_ids = {p for r in queue.pending for p in r.query.photo_ids}
    plan = plan_removal(dataset, nsids=sorted(nsids), photo_ids=sorted(photo_ids))
    if not dry_run:
        ids = [r.id for r in queue.pending]
        remove_faces(plan, reason=f"removal request{'s' if len(ids) > 1 else ''} {', '.join(ids)}")
        with appending(path, lock=True) as f:
            date = _now()
            f.write("".join(json.dumps({"done": r.id, "date": date, "faces_removed": len(faces[r.id])}) + "\n"
                            for r in queue.pending))
    return Applied(queue.pending, faces, plan, queue.malformed, queue.done)
