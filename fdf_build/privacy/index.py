"""Search: which faces of a dataset are of this Flickr user, or of this photo, in milliseconds.

:class:`MetainfoIndex` answers without parsing a 186 MB ``fdf_metainfo.json``:
an SQLite index (stdlib ``sqlite3``) maps NSIDs and photo ids to the byte ranges
of their entries, one indexed query finds them, and only those entries are
parsed. The index records the metainfo's size, mtime, ctime, inode and device
and is rebuilt when any differs (ctime catches an in-place edit that kept size
and mtime), and every entry it returns is checked against the query: a stale
index is rebuilt, it never answers wrong. It lives beside the metainfo
(``fdf_metainfo.json.index``), or, where that directory is read-only, in the
user's cache directory.

Stdlib only (no numpy, cv2 or requests), so ``search_username.py`` starts fast.
Entries are read as :class:`~fdf_build.dataset.metainfo.FaceRecord`, so both metainfo
forms work: ours, and FDF's published one (no ``photo_id``: it comes from
``photo_url``; missing fields are tolerated).
"""

from __future__ import annotations

import codecs
import hashlib
import json
import logging
import os
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional

from ..dataset.layout import METAINFO, split_dirs
from ..dataset.loaders import entry_problem
from ..dataset.metainfo import CATEGORIES, FaceRecord, entry_photo_id
from ..errors import BadInput, DatasetError
from ..files import clear_leftovers, commit, temp_beside
from ..flickr import canonical_nsid
from ..lock import dataset_lock
from ..split import SPLITS

log = logging.getLogger(__name__)

INDEX_SUFFIX = ".index"
INDEX_VERSION = 3



def file_stamp(path: Path) -> dict:
    """What identifies a file's version: size, mtime, ctime (an in-place edit that restores mtime changes it), inode, device."""
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "inode": st.st_ino,
            "device": st.st_dev}


_WS = re.compile(r"[ \t\n\r]*")


def _top_level_entries(f, chunk: int = 8 << 20) -> Iterator[tuple[str, int, int, object]]:
    """(key, start, end, value) of each top-level member of the JSON object in binary file ``f``.

    Reads a window at a time, so memory stays bounded whatever the file's size. Decoding as
    latin-1 maps every byte to one character, so character offsets are byte offsets even where
    the file holds UTF-8 text (JSON's syntax is ASCII); strings in ``value`` are latin-1 views
    of their UTF-8 bytes.
    """
    decoder = json.JSONDecoder()
    utf8 = codecs.getincrementaldecoder("utf-8")()  # only to refuse what is not UTF-8, chunk by chunk
    text, base, eof, read = "", 0, False, 0

    def more() -> bool:
        nonlocal text, eof, read
        data = f.read(chunk)
        eof = not data
        try:
            utf8.decode(data, final=eof)
        except UnicodeDecodeError as e:
            raise ValueError(f"invalid UTF-8 at byte {read + max(0, e.start)}") from None
        read += len(data)
        text += data.decode("latin-1")
        return not eof

    def skip_ws(pos: int) -> int:
        while True:
            pos = _WS.match(text, pos).end()
            if pos < len(text) or not more():
                return pos

    def decode(pos: int):
        while True:
            try:
                return decoder.raw_decode(text, pos)
            except ValueError:
                if eof or not more():
                    raise

    def expect(pos: int, chars: str) -> int:
        pos = skip_ws(pos)
        if pos >= len(text) or text[pos] not in chars:
            raise ValueError(f"expected {' or '.join(map(repr, chars))} at byte {base + pos}")
        return pos

    more()
    pos = skip_ws(expect(0, "{") + 1)
    if text[pos : pos + 1] == "}":
        return
    while True:
        key, pos = decode(skip_ws(pos))
        pos = expect(pos, ":")
        start = skip_ws(pos + 1)
        value, end = decode(start)
        yield key, base + start, base + end, value
        pos = expect(end, ",}")
        if text[pos] == "}":
            return
        pos += 1
        if pos > chunk:  # drop what is parsed, keep the offsets absolute
            text, base = text[pos:], base + pos
            pos = 0


def _utf8(text: Optional[str]) -> Optional[str]:
    return text.encode("latin-1").decode("utf-8") if isinstance(text, str) else None


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fdf_build" / "search"


def index_paths(metainfo: Path) -> list[Path]:
    """Where the index of ``metainfo`` may be: beside it, then in the user's cache (for read-only copies)."""
    metainfo = Path(metainfo).resolve()
    digest = hashlib.sha256(str(metainfo).encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return [metainfo.with_name(metainfo.name + INDEX_SUFFIX), _cache_dir() / f"{digest}.sqlite"]


_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE faces (pos INTEGER PRIMARY KEY, image TEXT NOT NULL, start INTEGER NOT NULL, end INTEGER NOT NULL,
                    nsid TEXT, photo_id INTEGER, license TEXT, license_url TEXT, detector TEXT, keypoint_model TEXT);
"""
_INDEXES = "CREATE INDEX faces_nsid ON faces(nsid); CREATE INDEX faces_photo ON faces(photo_id);"
#: one indexed query per lookup: SQLite answers the OR with both indexes and a union
LOOKUP = ("SELECT image, start, end FROM faces WHERE nsid IN (SELECT value FROM json_each(?)) "
          "OR photo_id IN (SELECT value FROM json_each(?)) ORDER BY pos")


class MetainfoIndex:
    """A fresh index of one ``fdf_metainfo.json``: :meth:`open` it, then :meth:`lookup`."""

    def __init__(self, metainfo: Path, db: sqlite3.Connection, path: Optional[Path]):
        self.metainfo, self.db, self.path = Path(metainfo), db, path

    @classmethod
    def open(cls, metainfo: Path, *, write: bool = True) -> "MetainfoIndex":
        """The index of ``metainfo``, (re)built when missing or stale; kept in memory if nowhere is writable."""
        metainfo = Path(metainfo)
        if not metainfo.is_file():
            raise BadInput(f"{metainfo}: no such file")
        stamp = file_stamp(metainfo)
        places = index_paths(metainfo)
        for path in places:
            db = _open_fresh(path, stamp)
            if db is not None:
                return cls(metainfo, db, path)
        return cls.build(metainfo, places if write else [], stamp)

    @classmethod
    def build(cls, metainfo: Path, places: Iterable[Path] = (), stamp: Optional[dict] = None) -> "MetainfoIndex":
        """Index ``metainfo`` into the first of ``places`` that can be written (else into memory)."""
        stamp = stamp or file_stamp(metainfo)
        for path in places:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = temp_beside(path)
            except OSError:
                continue  # read-only: try the next place
            try:
                db = sqlite3.connect(tmp)
                # a temp file that commit() fsyncs whole before its rename: SQLite's own journal and syncs
                # would only make each of its transactions durable on the way
                db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;")
                _fill(db, metainfo, stamp)
                db.close()
                if file_stamp(metainfo) != stamp:  # changed while we read it: do not save a wrong index
                    raise BadInput(f"{metainfo} changed while it was indexed; run again")
                commit(tmp, path)
            except (sqlite3.OperationalError, OSError) as e:  # a full disk, say: the index is a cache
                tmp.unlink(missing_ok=True)
                log.warning("%s: the search index cannot be saved there (%s); kept in memory for now", path, e)
                continue
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            return cls(metainfo, _connect(path), path)
        db = sqlite3.connect(":memory:")
        _fill(db, metainfo, stamp)
        return cls(metainfo, db, None)

    def lookup(self, *, nsids: Iterable[str] = (), photo_ids: Iterable[int] = ()) -> list[tuple[str, FaceRecord]]:
        """(image number, entry) of every face of these owners or photos, in file order.

        Every entry read is checked against the query; if one does not match (the metainfo
        changed under an index whose stamp still matched), the index is rebuilt and asked again.
        """
        nsids, photo_ids = set(nsids), {int(p) for p in photo_ids}
        found = self._read(nsids, photo_ids)
        if found is None:
            self.db.close()
            rebuilt = MetainfoIndex.build(self.metainfo, [self.path] if self.path else [])
            self.db, self.path = rebuilt.db, rebuilt.path
            found = self._read(nsids, photo_ids)
            if found is None:
                raise BadInput(f"{self.metainfo} changed while it was read; run again")
        return found

    def _read(self, nsids: set[str], photo_ids: set[int]) -> Optional[list[tuple[str, FaceRecord]]]:
        rows = self.db.execute(LOOKUP, (json.dumps(sorted(nsids)), json.dumps(sorted(photo_ids)))).fetchall()
        split = self.metainfo.parent.name if self.metainfo.parent.name in CATEGORIES else None
        out = []
        with open(self.metainfo, "rb") as f:
            for image, start, end in rows:
                f.seek(start)
                try:
                    entry = json.loads(f.read(end - start))
                    record = FaceRecord.from_json(image, entry, split=split)
                except (ValueError, TypeError, AttributeError):
                    return None
                if record.user_nsid not in nsids and record.photo_id not in photo_ids:
                    return None
                out.append((image, record))
        return out

    def counts(self, *columns: str) -> dict[tuple, int]:
        """Faces per distinct value of ``columns`` (``license``, ``license_url``, ``detector``, ``keypoint_model``,
        ``nsid``...), counted by SQLite: what the dataset card reports, without parsing the metainfo."""
        if not columns or set(columns) - _COLUMNS:
            raise ValueError(f"unknown column among {columns}; use {sorted(_COLUMNS)}")
        names = ", ".join(columns)
        return {tuple(row[:-1]): row[-1] for row in
                self.db.execute(f"SELECT {names}, COUNT(*) FROM faces GROUP BY {names} ORDER BY {names}")}

    def distinct(self, column: str) -> int:
        """How many distinct non-null values ``column`` holds (``nsid``: owners, ``photo_id``: photos)."""
        if column not in _COLUMNS:
            raise ValueError(f"unknown column {column!r}; use {sorted(_COLUMNS)}")
        return self.db.execute(f"SELECT COUNT(DISTINCT {column}) FROM faces").fetchone()[0]

    def close(self) -> None:
        self.db.close()


_COLUMNS = {"nsid", "photo_id", "license", "license_url", "detector", "keypoint_model"}


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)


def _open_fresh(path: Path, stamp: dict) -> Optional[sqlite3.Connection]:
    """The index at ``path`` if it exists and was made from the metainfo as it is now."""
    if not path.is_file():
        return None
    try:
        db = _connect(path)
        meta = dict(db.execute("SELECT key, value FROM meta"))
    except sqlite3.Error:  # not an index (an older format, a damaged file): rebuilt
        return None
    if meta.get("version") == str(INDEX_VERSION) and meta.get("stamp") == json.dumps(stamp, sort_keys=True):
        return db
    db.close()
    return None


def _fill(db: sqlite3.Connection, metainfo: Path, stamp: dict) -> None:
    db.executescript(_SCHEMA)

    def rows():
        for position, (key, start, end, entry) in enumerate(_top_level_entries(f)):
            problem = entry_problem(entry)  # the metainfo loader's rule, entry by entry
            if problem or not key.isascii() or not key.isdigit():
                raise ValueError(f"entry {key[:40]!r}: {problem or 'not an image number'}")
            nsid = entry.get("user_nsid")
            yield (position, _utf8(key), start, end, _utf8(nsid) if nsid else None, entry_photo_id(entry),
                   *(_utf8(entry.get(name) or "") for name in ("license", "license_url", "detector", "keypoint_model")))

    try:
        with open(metainfo, "rb") as f, db:
            db.executemany("INSERT INTO faces VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows())
            db.executescript(_INDEXES)
            db.executemany("INSERT INTO meta VALUES (?, ?)",
                           [("version", str(INDEX_VERSION)), ("stamp", json.dumps(stamp, sort_keys=True))])
    except RecursionError:
        raise DatasetError(f"{metainfo}: not a valid fdf_metainfo.json (JSON nested too deeply to read)") from None
    except (ValueError, AttributeError, TypeError) as e:
        raise DatasetError(f"{metainfo}: not a valid fdf_metainfo.json ({e})") from None


def metainfo_files(path: Path) -> list[tuple[str, Path]]:
    """(split, metainfo path) for a metainfo file, a split directory or a dataset root."""
    path = Path(path)
    if not path.exists():
        raise BadInput(f"{path}: no such file or directory")
    if path.is_file():
        split = path.parent.name or "."
        return [(split, path)]
    if (path / METAINFO).is_file():
        return [(path.name, path / METAINFO)]
    found = [(split, d / METAINFO) for split, d in split_dirs(path)]
    if not found:
        raise BadInput(f"{path}: no fdf_metainfo.json here, nor train/ or val/ with one")
    return found


@dataclass(frozen=True)
class Match:
    split: str
    image: str
    record: FaceRecord

    @property
    def entry(self) -> dict:
        """The face's metainfo entry as a dict (FDF's keys and ours)."""
        return self.record.to_json()

    def to_dict(self) -> dict:
        r = self.record
        return {
            "split": self.split, "image": int(self.image) if self.image.isdigit() else self.image,
            "user_nsid": r.user_nsid or None, "photo_id": r.photo_id, "photo_url": r.photo_url or None,
            "download_url": r.download_url or None, "photo_title": r.photo_title, "license": r.license or None,
            "license_url": r.license_url or None,
        }


def index_dataset(path: Path) -> None:
    """Write (or refresh) every split's search index now, so a user's first search is fast too."""
    for _, directory in split_dirs(path):
        MetainfoIndex.open(directory / METAINFO).close()


def _put_back_swapped_out_splits(root: Path) -> None:
    """Where a swap took two renames (no folder exchange on this file system) and a kill came between them, a
    split is missing and its old folder is ``.SPLIT.old``: put it back, unless a command holding the lock is in
    the middle of that swap right now."""
    if not any((root / f".{split}.old").is_dir() and not (root / split).exists() for split in SPLITS):
        return
    try:
        with dataset_lock(root, "search", read_only_ok=True, wait=False):
            clear_leftovers(root, swapped=SPLITS, keep=lambda name: not name.endswith(".old"))
    except (BlockingIOError, OSError):
        pass  # a writer is at it, or the folder is read-only: search what is there


def search(path: Path, *, nsids: Iterable[str] = (), photo_ids: Iterable[int] = ()) -> list[Match]:
    """Every face of these owners or photos under ``path`` (a metainfo file, a split or a dataset root).

    NSIDs match in any case of their ``@N`` (:func:`~fdf_build.flickr.canonical_nsid`)."""
    nsids, photo_ids = [canonical_nsid(n) for n in nsids], list(photo_ids)
    if Path(path).is_dir():
        _put_back_swapped_out_splits(Path(path))
    matches = []
    for split, metainfo in metainfo_files(path):
        index = MetainfoIndex.open(metainfo)
        try:
            matches += [Match(split, key, record) for key, record in index.lookup(nsids=nsids, photo_ids=photo_ids)]
        finally:
            index.close()
    return matches
