"""Loading a dataset's files: one loader per kind, each checking shape and types before anything uses them.

A file that is not what its name promises (cut short, another format, a JSON list where an object belongs, a
number where a list belongs, nested deeper than Python can parse, a photo id beyond 64 bits, invalid UTF-8) is
a :class:`~fdf_build.errors.DatasetError` whose message names the file and the problem, which every command
prints as one line with exit status 2. Kinds here:

* ``fdf_metainfo.json``: :func:`load_metainfo` (entries as dicts; ``metainfo.read_metainfo`` makes them
  :class:`~fdf_build.dataset.metainfo.FaceRecord`); :func:`entry_problem` is the rule for one entry, which the
  search index applies too.
* ``landmarks.npy``, ``bounding_box.npy``, ``landmarks68.npy``: :func:`load_array`.
* ``.work/build.json``, a build's settings: :func:`read_build_state`.

The build's shard files are read by :mod:`fdf_build.dataset.writer`, the removal ledger by
:mod:`fdf_build.privacy.removal`, blocklists by :func:`fdf_build.flickr.read_ids`, with the same rule.
Stdlib at import time (numpy is imported where arrays are read): ``search_username.py`` reads metainfo too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Union

from ..errors import DatasetError
from ..flickr import photo_id_from_url

if TYPE_CHECKING:
    import numpy as np

METAINFO = "fdf_metainfo.json"
#: the largest id SQLite (and numpy's int64) holds; Flickr's ids have 11 digits
MAX_ID = (1 << 63) - 1
_KEY = re.compile(r"0|[1-9][0-9]{0,17}")
_TEXT = ("author", "category", "date_crawled", "license", "license_url", "photo_title", "photo_url", "page_url",
         "download_url", "user_nsid", "detector", "keypoint_model")
_DATES = ("date_taken", "date_uploaded")  # text, or epoch seconds in older builds
_IDS = ("photo_id", "yfcc100m_line_idx", "face_index")
_BOXES = ("bounding_box", "original_bounding_box")
_POINTS = ("landmark", "original_landmark", "landmarks68", "landmark68")


_NUMBER = (int, float)  # compared by type(): a JSON true is a bool, not a number
_NUMBER_OR_NULL = (int, float, type(None))


def int_or_none(value) -> Optional[int]:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def entry_photo_id(entry: Mapping[str, Any]) -> Optional[int]:
    """The photo id of a raw entry: its ``photo_id``, else parsed from ``photo_url``, ``page_url`` or
    ``download_url`` (FDF's published entries have only ``photo_url``). Cheaper than a whole record,
    for scanning every entry of a metainfo (the search index)."""
    photo_id = int_or_none(entry.get("photo_id"))
    for key in ("photo_url", "page_url", "download_url"):
        if photo_id is not None:
            break
        photo_id = photo_id_from_url(str(entry.get(key) or ""))
    return photo_id


def _number(value) -> bool:
    return type(value) in _NUMBER


def _id_problem(value) -> Optional[str]:
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if type(value) is not int or value < 0:
        return f"{value!r} is not an id (a whole number)"
    if value > MAX_ID:
        return f"{value} is beyond 64 bits"
    return None


def _points_ok(points) -> bool:
    """A list of ``[x, y]`` (numbers or nulls) or nulls."""
    return type(points) is list and all(
        p is None or (type(p) is list and len(p) >= 2 and type(p[0]) in _NUMBER_OR_NULL
                      and type(p[1]) in _NUMBER_OR_NULL) for p in points)


def entry_problem(entry: Any) -> Optional[str]:
    """What is wrong with one metainfo entry (None: nothing), in words: which field, and how.

    Published copies differ in which fields they have, so absent fields are fine; a field that is there must
    have its form, so that nothing downstream meets a string where it reads numbers.
    """
    if not isinstance(entry, dict):
        return f"a JSON {type(entry).__name__}, not an object"
    for key in (*_TEXT, *_DATES):
        value = entry.get(key)
        if value is not None and not isinstance(value, str) and not (key in _DATES and _number(value)):
            return f"{key} is a JSON {type(value).__name__}, not text"
    for key in _IDS:
        problem = _id_problem(entry.get(key))
        if problem:
            return f"{key} {problem}"
    for key in _BOXES:
        box = entry.get(key)
        if box is not None and not (type(box) is list and len(box) == 4 and all(type(v) in _NUMBER for v in box)):
            return f"{key} is not a list of 4 numbers"
    for key in _POINTS:
        points = entry.get(key)
        if points is not None and not _points_ok(points):
            return f"{key} is not a list of [x, y] points"
    score = entry.get("face_score")
    if score is not None and not _number(score):
        return "face_score is not a number"
    scores, missing = entry.get("keypoint_scores"), entry.get("keypoints_missing")
    if scores is not None and not (type(scores) is list and all(type(s) in _NUMBER_OR_NULL for s in scores)):
        return "keypoint_scores is not a list of numbers"
    if missing is not None and not (isinstance(missing, list) and all(isinstance(m, str) for m in missing)):
        return "keypoints_missing is not a list of names"
    photo_id = entry_photo_id(entry)
    if photo_id is not None and photo_id > MAX_ID:
        return f"the photo id in its URL, {photo_id}, is beyond 64 bits"
    return None


def metainfo_path(path: Union[str, Path]) -> Path:
    """The metainfo file itself, given it or the split directory holding it."""
    path = Path(path)
    return path / METAINFO if path.is_dir() else path


def load_json(path: Path, what: str) -> Any:
    """``path`` parsed as JSON, or a DatasetError saying it is not ``what`` (and why)."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DatasetError(f"{path}: not a file") from None
    except RecursionError:
        raise DatasetError(f"{path}: not {what} (JSON nested too deeply to read)") from None
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not {what} (invalid UTF-8 at byte {e.start})") from None
    except (OSError, ValueError) as e:  # JSONDecodeError is a ValueError
        raise DatasetError(f"{path}: not {what} ({e})") from None


def load_metainfo(path: Union[str, Path]) -> dict[str, dict]:
    """The entries of an ``fdf_metainfo.json`` (or of the split directory holding it), keyed ``"0"..."N-1"``,
    every entry checked (:func:`entry_problem`)."""
    path = metainfo_path(path)
    what = f"a valid {METAINFO}"
    meta = load_json(path, what)
    if not isinstance(meta, dict):
        raise DatasetError(f"{path}: not {what} (a JSON {type(meta).__name__}, not an object)")
    for key, entry in meta.items():
        if not _KEY.fullmatch(key):
            raise DatasetError(f"{path}: not {what} (key {key[:40]!r} is not an image number)")
        problem = entry_problem(entry)
        if problem:
            raise DatasetError(f"{path}: not {what} (entry {key}: {problem})")
    if len(meta) and max(map(int, meta)) != len(meta) - 1:
        raise DatasetError(f"{path}: not {what} (its {len(meta)} keys are not 0..{len(meta) - 1})")
    return meta


def load_array(split_dir: Path, name: str, *, shape: Optional[tuple] = None, mmap_mode: Optional[str] = None,
               ) -> np.ndarray:
    """``split_dir/name`` (``landmarks.npy``...): a numeric ``.npy`` of ``shape`` (``None`` in it: any length),
    never unpickled; or a :class:`DatasetError` naming the file."""
    import numpy as np

    path = Path(split_dir) / name
    try:
        array = np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except (OSError, ValueError, EOFError) as e:  # garbage, pickles and files cut short
        raise DatasetError(f"{path}: not a readable .npy file ({e})") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiu":
        raise DatasetError(f"{path}: not a numeric array (dtype {getattr(array, 'dtype', type(array).__name__)})")
    if shape is not None and (len(array.shape) != len(shape) or any(
            want is not None and have != want for have, want in zip(array.shape, shape))):
        wanted = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
        raise DatasetError(f"{path}: shape {array.shape}, expected {wanted}")
    return array


#: a build's settings, beside its shards
BUILD_STATE = "build.json"


def read_build_state(work: Path) -> Optional[dict]:
    """``work/build.json`` (a build's settings, identity and blocklist), checked; None when there is none."""
    path = Path(work) / BUILD_STATE
    if not path.exists():
        return None
    state = load_json(path, "a build's state")
    if not (isinstance(state, dict) and isinstance(state.get("config"), dict)
            and all(isinstance(state.get(k, {}), (dict, type(None))) for k in ("identity", "blocklist"))
            and isinstance(state.get("crawl_date", ""), str)):
        raise DatasetError(f"{path}: not a build's state (an object with config, identity, blocklist and "
                           "crawl_date); start the build again with --restart")
    return state


def require(condition: bool, path: Path, problem: str) -> None:
    """One line for a file found wrong after loading (a key missing where the loader cannot know it)."""
    if not condition:
        raise DatasetError(f"{path}: {problem}")


def as_mapping(value: Any, path: Path, what: str) -> Mapping:
    require(isinstance(value, dict), path, f"not {what} (a JSON {type(value).__name__}, not an object)")
    return value
