"""Files: the one module that writes them, so that no reader ever sees half of one.

A file is written to a temp file in its own directory, fsynced and ``os.replace``-d
over its name (:func:`atomic_write`, :func:`replacing`); a directory is assembled
beside its final place and swapped in with two renames (:func:`swap_in`); a
journal line is appended and fsynced, with its directory entry the first time
(:func:`appending`). Modes are what ``open()`` and ``mkdir()`` would give, not
the private ones ``mkstemp`` makes, because datasets are shared.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Union

try:
    import fcntl
except ImportError:  # Windows: appenders are not locked against each other there
    fcntl = None


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()
FILE_MODE, DIR_MODE = 0o666 & ~_UMASK, 0o777 & ~_UMASK


def temp_beside(path: Union[str, Path]) -> Path:
    """A new empty temp file in ``path``'s directory (raises ``OSError`` where that cannot be written)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    return Path(tmp)


def remove_leftover_temps(folder: Union[str, Path], name_glob: str = "*") -> int:
    """Delete what :func:`temp_beside` left for files matching ``name_glob`` in ``folder`` when a process was
    killed before its rename; returns how many. Only for folders one process writes at a time."""
    leftovers = list(Path(folder).glob(f".{name_glob}.*.tmp"))
    for tmp in leftovers:
        tmp.unlink(missing_ok=True)
    return len(leftovers)


def commit(tmp: Union[str, Path], path: Union[str, Path]) -> None:
    """Give ``tmp`` the usual mode, fsync it and rename it over ``path``."""
    os.chmod(tmp, FILE_MODE)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


@contextmanager
def replacing(path: Union[str, Path]) -> Iterator[Path]:
    """A temp path to write ``path``'s new content to; it replaces ``path`` only if the block succeeds."""
    tmp = temp_beside(path)
    try:
        yield tmp
        commit(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: Union[str, Path], data: Union[bytes, str]) -> None:
    if isinstance(data, str):
        data = data.encode("utf-8")
    with replacing(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: Union[str, Path], obj, *, sort_keys: bool = True) -> None:
    """``obj`` as indented JSON, keys sorted unless the order is the format's (FFHQ-Features' records)."""
    atomic_write(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=sort_keys) + "\n")


def jsonl(rows: Iterable[dict], *, ensure_ascii: bool = True, sort_keys: bool = True) -> str:
    """One JSON object a line, keys sorted (but where the order is the format's): the form of every ``.jsonl``
    this project writes."""
    return "".join(json.dumps(row, ensure_ascii=ensure_ascii, sort_keys=sort_keys) + "\n" for row in rows)


def read_jsonl(path: Path) -> Iterator[dict]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


@contextmanager
def appending(path: Union[str, Path], *, lock: bool = False) -> Iterator:
    """``path`` open for appending (``lock``: locked against other appenders); fsynced before it is closed.

    For a new file its directory is fsynced too: the file's name must survive a crash, not only its bytes.
    """
    path = Path(path)
    new = not path.exists()
    with open(path, "a", encoding="utf-8") as f:
        if lock and fcntl is not None:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        yield f
        f.flush()
        os.fsync(f.fileno())
    if new:
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def append_durably(path: Union[str, Path], text: str) -> None:
    with appending(path) as f:
        f.write(text)


def link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def scratch(directory: Path):
    """A binary temp file in ``directory`` with no name: what it holds never becomes a file anyone sees,
    and it is gone when closed or when the process dies, so a killed command leaves nothing to clean."""
    return tempfile.TemporaryFile(dir=directory)


def new_staging_dir(parent: Path, prefix: str) -> Path:
    staging = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    staging.chmod(DIR_MODE)
    return staging


def swap_in(staging: Path, final: Path) -> None:
    """Replace directory ``final`` by ``staging``: two renames, so readers see the old or the new one."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
    os.replace(staging, final)
    if old is not None:
        shutil.rmtree(old)
