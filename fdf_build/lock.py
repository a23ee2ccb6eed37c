"""The dataset lock: one command at a time changes a dataset.

Every command that changes a dataset, or reads it whole to copy it, holds its lock for its whole run: ``build``
(its shard phase too: a removal must not race the photos being cut), its merge, ``remove``, ``audit --apply``,
``retry-failed``, ``rehydrate``, ``attributes``, ``pack`` and a download into an existing dataset. A new command
that writes into a dataset takes it the same way::

    from fdf_build.lock import dataset_lock

    with dataset_lock(dataset, "fdf-build export"):
        ...  # nobody else changes `dataset` until the block ends

It is ``flock`` on ``DATASET/.fdf.lock``, so the kernel releases it when its process ends, however it ends: a
killed command never leaves a dataset locked. Threads of one process share a per-dataset ``RLock``, and a holder
may take the lock again (a removal inside a rehydration). A second taker waits, and says once, on the log, who
holds it. Readers that only look up a few entries (``search``, the owner page) take no lock: every change swaps
whole files and folders in, so they see the old or the new dataset.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

try:
    import fcntl
except ImportError:  # Windows: no lock, as before any lock existed
    fcntl = None

LOCK = ".fdf.lock"

log = logging.getLogger(__name__)

_guard = threading.Lock()
_thread_locks: dict[str, threading.RLock] = {}
_held: dict[str, tuple[Optional[int], int]] = {}  # lock path -> (file descriptor, depth)
_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


class LockUnavailable(OSError):
    """The lock file cannot be created: the dataset cannot be changed by this user (read-only, not ours)."""


def holder(path: Path) -> str:
    """Who holds the lock at ``path``, as its holder wrote it (``"fdf-build build (pid 123) since 12:00:01"``)."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        text = ""
    return text or "another command"


@contextmanager
def dataset_lock(dataset: Path, what: Optional[str] = None, *, read_only_ok: bool = False,
                 wait: bool = True) -> Iterator[None]:
    """Hold ``dataset``'s exclusive lock for the block; ``what`` is the command, named to anyone waiting.

    ``read_only_ok``: where the lock file cannot be created (a read-only copy), go on without it, since nobody
    can change such a dataset either; otherwise that is a :class:`LockUnavailable`. ``wait=False``: where
    another process holds it, raise ``BlockingIOError`` at once instead of waiting.
    """
    dataset = Path(dataset)
    path = dataset.resolve() / LOCK
    key = str(path)
    with _guard:
        thread_lock = _thread_locks.setdefault(key, threading.RLock())
    with thread_lock:
        fd, depth = _held.get(key, (None, 0))
        if depth == 0:
            fd = _acquire(path, what, read_only_ok, wait)
        _held[key] = (fd, depth + 1)
        try:
            yield
        finally:
            _held[key] = (fd, depth)
            if depth == 0:
                del _held[key]
                if fd is not None:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    os.close(fd)


def _acquire(path: Path, what: Optional[str], read_only_ok: bool, wait: bool) -> Optional[int]:
    if fcntl is None:
        return None
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        if read_only_ok and e.errno in _READ_ONLY:
            return None
        raise LockUnavailable(e.errno, f"{path.parent}: cannot be changed ({e.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        if not wait:
            os.close(fd)
            raise
        log.warning("%s: %s holds it; waiting", path.parent, holder(path))
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    # who holds it, for anyone who comes to wait (not fsynced: it is a note, gone with the holder)
    note = f"{what or ' '.join([Path(sys.argv[0]).name, *sys.argv[1:2]])} (pid {os.getpid()}) since " \
           f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n"
    os.ftruncate(fd, 0)
    os.pwrite(fd, note.encode("utf-8", "replace"), 0)
    return fd
