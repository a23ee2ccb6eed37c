"""Where outputs go: a local directory, or any fsspec URL (``s3://``, ``gs://``, ``file://``, ``memory://``...).

Object stores have no rename, so a temp file renamed into place is no atomic write there. An object is instead
written in one PUT, or in a multipart upload that is completed only when the whole object has been written
(:meth:`Storage.open_write`): a write that fails or is killed leaves no object under the final name. A local
directory keeps :mod:`fdf_build.files`' temp file and ``os.replace``. A directory-like output that must be
whole (a dataset, an export) marks itself complete by an object written last.

Remote URLs need the ``[s3]`` extra (fsspec + s3fs; ``gcsfs`` for ``gs://``) and the store's usual credentials
(for S3: ``AWS_ACCESS_KEY_ID``... or ``~/.aws``; ``AWS_ENDPOINT_URL`` for an S3-compatible server).
"""

from __future__ import annotations

import hashlib
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator, Union
from urllib.parse import urlsplit

from .errors import Stopped
from .files import atomic_write, replacing

#: a store writes in blocks of this size: one PUT below it, a multipart upload above (S3's minimum part is 5 MiB)
BLOCK_SIZE = 16 << 20


class StorageError(Stopped):
    """An output that cannot be reached or written (no such bucket, no credentials, no extra installed...): the
    input is fine, the place to write it is not (exit status 1)."""


def is_remote(url: Union[str, Path]) -> bool:
    """Whether ``url`` names an fsspec store rather than a local path (``file://`` is local)."""
    scheme = urlsplit(str(url)).scheme
    return len(scheme) > 1 and scheme != "file"  # one letter: a Windows drive


def local_path(url: Union[str, Path]) -> Path:
    text = str(url)
    return Path(urlsplit(text).path if text.startswith("file://") else text)


class Sink:
    """What :meth:`Storage.open_write` yields: a write-only stream that counts and hashes what goes through it.

    It has no ``seek``, whatever the destination: zipfile then writes the same bytes to a local file and to an
    object store (data descriptors after each member), so an output is identical wherever it is written.
    """

    def __init__(self, raw: BinaryIO):
        self._raw = raw
        self._md5 = hashlib.md5(usedforsecurity=False)
        self.size = 0
        self.closed = False

    def write(self, data) -> int:
        self._raw.write(data)
        self._md5.update(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._raw.flush()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    @property
    def md5(self) -> str:
        return self._md5.hexdigest()


class Storage:
    """A directory-like output: names are ``/``-separated paths under its root URL."""

    def __init__(self, url: Union[str, Path]):
        self.url = str(url).rstrip("/") or str(url)
        self.fs = None
        if not is_remote(self.url):
            self.root = local_path(self.url)
            return
        try:
            import fsspec
        except ImportError:
            raise StorageError(f"{self.url}: writing to a URL needs fsspec and s3fs: pip install 'fdf_build[s3]'") \
                from None
        try:
            self.fs, root = fsspec.core.url_to_fs(self.url)
        except (ImportError, ValueError) as e:  # an unknown protocol, or its package (s3fs, gcsfs) missing
            raise StorageError(f"{self.url}: {e}") from None
        self.root = root.rstrip("/")

    @property
    def remote(self) -> bool:
        return self.fs is not None

    def where(self, name: str) -> str:
        """The URL (or local path) of ``name``, for messages."""
        return f"{self.url}/{name}"

    def _path(self, name: str):
        return self.root / name if self.fs is None else f"{self.root}/{name}"

    @contextmanager
    def _errors(self, name: str = ""):
        try:
            yield
        except FileNotFoundError as e:
            raise StorageError(f"{self.where(name)}: not found ({e})") from None
        except PermissionError as e:
            raise StorageError(f"{self.where(name)}: access denied ({e})") from None
        except OSError as e:
            raise StorageError(f"{self.where(name)}: {e}") from None

    def exists(self, name: str) -> bool:
        with self._errors(name):
            return self._path(name).is_file() if self.fs is None else self.fs.isfile(self._path(name))

    def read_bytes(self, name: str) -> bytes:
        with self._errors(name):
            return self._path(name).read_bytes() if self.fs is None else self.fs.cat_file(self._path(name))

    def write_bytes(self, name: str, data: Union[bytes, str]) -> None:
        """Write a small object whole (one PUT), or a local file by temp file and rename."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        with self._errors(name):
            if self.fs is None:
                self._path(name).parent.mkdir(parents=True, exist_ok=True)
                atomic_write(self._path(name), data)
            else:
                self.fs.pipe_file(self._path(name), data)

    @contextmanager
    def open_write(self, name: str) -> Iterator[Sink]:
        """A :class:`Sink` whose bytes become ``name`` only if the block succeeds; otherwise nothing appears."""
        with self._errors(name):
            if self.fs is None:
                self._path(name).parent.mkdir(parents=True, exist_ok=True)
                with replacing(self._path(name)) as tmp, open(tmp, "wb") as f:
                    yield Sink(f)
                return
            f = self.fs.open(self._path(name), "wb", block_size=BLOCK_SIZE)
            try:
                yield Sink(f)
            except BaseException:
                f.discard()  # aborts the multipart upload (s3fs, gcsfs): no object is left under the name
                f.closed = True  # so that neither close() nor the garbage collector commits what was written
                raise
            f.close()  # completes the upload: the object appears whole

    def upload(self, source: Path, name: str) -> None:
        """Copy the local file ``source`` to ``name`` (multipart on a store when large, completed last)."""
        with self._errors(name):
            if self.fs is None:
                self._path(name).parent.mkdir(parents=True, exist_ok=True)
                with replacing(self._path(name)) as tmp:
                    shutil.copyfile(source, tmp)
            else:
                self.fs.put_file(str(source), self._path(name))

    def upload_many(self, files: dict[str, Path]) -> None:
        """Copy local files to their names (a store uploads them concurrently), each written whole."""
        if not files:
            return
        if self.fs is None:
            for name, source in files.items():
                self.upload(source, name)
            return
        with self._errors(next(iter(files), "")):
            self.fs.put([str(p) for p in files.values()], [self._path(n) for n in files])

    def download_many(self, files: dict[str, Path]) -> None:
        """Copy names to local files (a store downloads them concurrently), for a working copy: a file cut off
        is left as far as it came, where :meth:`download` writes each whole."""
        if self.fs is None:
            for name, target in files.items():
                self.download(name, target)
            return
        for target in files.values():
            target.parent.mkdir(parents=True, exist_ok=True)
        with self._errors(next(iter(files), "")):
            self.fs.get([self._path(n) for n in files], [str(p) for p in files.values()])

    def download(self, name: str, target: Path) -> None:
        """Copy ``name`` to the local file ``target``, atomically."""
        target.parent.mkdir(parents=True, exist_ok=True)
        with self._errors(name), replacing(target) as tmp:
            if self.fs is None:
                shutil.copyfile(self._path(name), tmp)
            else:
                self.fs.get_file(self._path(name), str(tmp))

    def list(self, prefix: str = "") -> list[str]:
        """Names of every file under ``prefix`` (recursively), relative to the root, sorted; [] when none."""
        base = self._path(prefix) if prefix else self.root
        with self._errors(prefix):
            if self.fs is None:
                base = Path(base)
                return sorted(p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file()) \
                    if base.is_dir() else []
            if not self.fs.isdir(base):
                return []
            start = len(self.root) + 1
            return sorted(p[start:] for p in self.fs.find(base))

    def remove(self, names: Iterable[str]) -> None:
        names = list(names)
        if not names:
            return
        with self._errors(names[0]):
            if self.fs is None:
                for name in names:
                    self._path(name).unlink(missing_ok=True)
                for folder in sorted({self._path(n).parent for n in names}, key=lambda p: -len(p.parts)):
                    if folder != self.root and folder.is_dir() and not any(folder.iterdir()):
                        folder.rmdir()  # as on a store, where a folder is gone with its last object
            else:
                self.fs.rm([self._path(n) for n in names])
