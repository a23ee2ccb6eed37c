"""Files: the one module that writes them, so that no reader ever sees half of one.

A file is written to a temp file in its own directory, fsynced and ``os.replace``-d
over its name (:func:`atomic_write`, :func:`replacing`); a directory is assembled
beside its final place and exchanged with it in one rename (:func:`swap_in`); a
journal line is appended and fsynced, with its directory entry the first time
(:func:`appending`). Modes are what ``open()`` and ``mkdir()`` would give, not
the private ones ``mkstemp`` makes, because datasets are shared.

What a killed command leaves behind has names this module gives, so the next command can find it and
clear it (:func:`clear_leftovers`): temp files ``.NAME.XXXX.tmp``, staging folders ``.staging-PURPOSE-XXXX``
and, where the file system cannot exchange two folders, a swapped-out ``.NAME.old``.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import shutil
import tarfile
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator, Union

from .errors import DatasetError

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
STAGING, TEMP_SUFFIX = ".staging-", ".tmp"
_TEMP = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp\Z")  # temp_beside's names: mkstemp puts 8 such characters there


def temp_beside(path: Union[str, Path]) -> Path:
    """A new empty temp file in ``path``'s directory (raises ``OSError`` where that cannot be written)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
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


def read_jsonl(path: Path, *, torn_tail: bool = False) -> Iterator[dict]:
    """The objects of a ``.jsonl`` file this project wrote, one a line; a line that is not one is a
    :class:`~fdf_build.errors.DatasetError` naming the file and the line. ``torn_tail``: a last line without its
    newline that is not JSON is an append a crash cut short (:func:`appending` drops it): skipped."""
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except (ValueError, RecursionError) as e:
                    if torn_tail and not line.endswith("\n"):
                        return
                    raise DatasetError(f"{path}: line {number} is not JSON ({e})") from None
                if not isinstance(row, dict):
                    raise DatasetError(f"{path}: line {number} is a JSON {type(row).__name__}, not an object")
                yield row
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: cannot be read ({e})") from None


@contextmanager
def appending(path: Union[str, Path], *, lock: bool = False) -> Iterator:
    """``path`` open for appending (``lock``: locked against other appenders); fsynced before it is closed.

    For a new file its directory is fsynced too: the file's name must survive a crash, not only its bytes. What
    follows the last newline is an append a crash cut short (every append here ends its lines): it is dropped
    first, so the new lines do not continue it.
    """
    path = Path(path)
    new = not path.exists()
    with open(path, "a+", encoding="utf-8") as f:  # read too: to find a torn last line
        if lock and fcntl is not None:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        _drop_torn_tail(f.fileno())
        yield f
        f.flush()
        os.fsync(f.fileno())
    if new:
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def _drop_torn_tail(fd: int, block: int = 4096) -> None:
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    end = size
    while end > 0:
        start = max(0, end - block)
        newline = os.pread(fd, end - start, start).rfind(b"\n")
        if newline >= 0:
            os.truncate(fd, start + newline + 1)
            return
        end = start
    os.truncate(fd, 0)


def append_durably(path: Union[str, Path], text: str, *, lock: bool = False) -> None:
    with appending(path, lock=lock) as f:
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


def new_staging_dir(parent: Path, purpose: str) -> Path:
    """A new empty folder ``parent/.staging-PURPOSE-XXXX``: what :func:`clear_leftovers` clears if its command dies."""
    staging = Path(tempfile.mkdtemp(dir=parent, prefix=f"{STAGING}{purpose.strip('.-')}-"))
    staging.chmod(DIR_MODE)
    return staging


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None) if os.name == "posix" else None


def exchange(a: Path, b: Path) -> None:
    """Swap paths ``a`` and ``b`` in one step (Linux ``renameat2(RENAME_EXCHANGE)``); ``OSError`` where the
    system or file system cannot (then nothing changed)."""
    if _renameat2 is None:
        raise OSError(errno.ENOSYS, "renameat2 is not available")
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(a))


def old_name(final: Path) -> Path:
    return final.with_name(f".{final.name}.old")


def swap_in(staging: Path, final: Path) -> None:
    """Put directory ``staging`` in place of ``final``: readers see the old folder or the new one, never none.

    Where the file system can, the two are exchanged in one rename and the old one, now at ``staging``, is
    removed; elsewhere it takes two renames, through ``.FINAL.old``, and a command killed between them leaves
    ``final`` missing until :func:`clear_leftovers` puts the old one back.
    """
    if not final.exists():
        os.replace(staging, final)
        return
    try:
        exchange(staging, final)
    except OSError as e:
        if e.errno not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EXDEV):
            raise
    else:
        shutil.rmtree(staging)
        return
    old = old_name(final)
    if old.exists():
        shutil.rmtree(old)
    os.replace(final, old)
    os.replace(staging, final)
    shutil.rmtree(old)


def clear_leftovers(directory: Path, *, swapped: Iterable[str] = (),
                    keep: Callable[[str], bool] = lambda name: False) -> list[str]:
    """Clear what killed commands left in ``directory`` (not below it); returns the names cleared.

    For each folder of ``swapped`` (the names :func:`swap_in` puts in place there), a ``.NAME.old`` goes back to
    ``NAME`` where ``NAME`` is missing (a swap killed halfway is undone), else it is removed. Staging folders
    and temp files, as this module names them, are removed, but those whose name ``keep`` is true for; nothing
    else is touched. Call it only while holding the lock of whatever writes there (:mod:`fdf_build.lock`).
    """
    old_names = {old_name(Path(name)).name for name in swapped}
    directory = Path(directory)
    cleared = []
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except FileNotFoundError:
        return cleared
    for entry in entries:
        name = entry.name
        if not name.startswith(".") or keep(name):
            continue
        path = Path(entry.path)
        if name in old_names and entry.is_dir(follow_symlinks=False):
            final = path.with_name(name[1:-4])
            if final.exists():
                shutil.rmtree(path)
            else:
                os.replace(path, final)
        elif name.startswith(STAGING) and entry.is_dir(follow_symlinks=False):
            shutil.rmtree(path)
        elif _TEMP.match(name) and entry.is_file(follow_symlinks=False):
            os.unlink(path)
        else:
            continue
        cleared.append(name)
    return cleared


def tar_info(name: str, size: int) -> tarfile.TarInfo:
    """A tar member's header that depends on its name and size alone (mtime 0, owner root, mode 0644), so that
    the same files always make the same tar."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info
