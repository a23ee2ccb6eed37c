"""Reading a metadata file as blocks of text lines, its decompression running beside the parser.

YFCC100M's file is ~12 GB of bzip2 (~100M lines): decompressing it takes a core on its own, so it runs
in its own process or thread while the caller parses: ``lbzip2``/``pigz`` when they are installed
(parallel, on every core), else Python's ``bz2``/``gzip`` in a thread (they release the GIL while they
decompress). Compression is told by the first bytes, not the name, so ``-`` (stdin) works too.

Lines are what ``open(..., newline="\\n")`` gives (split at ``\\n`` only, the ``\\n`` dropped),
undecodable bytes become U+FFFD rather than aborting a days-long scan. A file that ends early or
holds garbage raises :class:`MetadataError`, naming the file, the byte and line reached, and what to do.
"""

from __future__ import annotations

import io
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Optional, Union

from ..errors import BadInput
from ..files import scratch

#: decompressed bytes handed over at a time
BLOCK = 1 << 20
#: (name, first bytes, the standard library's reader, parallel decompressors that read stdin to stdout)
FORMATS = (
    ("bzip2", b"BZh", lambda f: __import__("bz2").BZ2File(f), (("lbzip2", "-dc"),)),
    ("gzip", b"\x1f\x8b", lambda f: __import__("gzip").GzipFile(fileobj=f), (("pigz", "-dc"),)),
)


class MetadataError(BadInput):
    """A metadata file that cannot be read to its end: truncated (a half-finished download) or corrupt.

    ``summary``, set by whoever counted the lines before it, holds what was read.
    """

    def __init__(self, path: Union[str, Path], problem: str, *, offset: int, size: Optional[int], line: int):
        where = "standard input" if str(path) == "-" else str(path)
        read = f"{offset:,}" + ("" if size is None else f" of {size:,}")
        super().__init__(f"{where}: {problem} (read {read} bytes, {line:,} lines): the file is truncated or corrupt; "
                         "download it again")
        self.summary = None


class _Counting(io.RawIOBase):
    """Counts the raw (compressed) bytes read through it."""

    def __init__(self, raw: BinaryIO):
        self.raw, self.count = raw, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self.raw.readinto(buffer)
        self.count += n or 0
        return n


@contextmanager
def line_blocks(path: Union[str, Path], *, on_bytes: Optional[Callable[[int], None]] = None,
                parallel: bool = True) -> Iterator[Iterator[list[str]]]:
    """Blocks (lists) of the lines of a plain, bzip2 or gzip file, or ``-`` for stdin.

    ``on_bytes`` hears how many raw (compressed) bytes each block consumed; ``parallel=False`` keeps
    to the standard library even where a parallel decompressor is installed.
    """
    raw = sys.stdin.buffer if str(path) == "-" else open(path, "rb")
    size = None if raw is sys.stdin.buffer else os.fstat(raw.fileno()).st_size
    counting = _Counting(raw)
    stream = io.BufferedReader(counting, buffer_size=BLOCK)
    source = None
    try:
        head = stream.peek(3)[:3]
        kind = next((f for f in FORMATS if head.startswith(f[1])), None)
        if kind is None:
            source = _Plain(stream, counting)
        else:
            tool = next((cmd for cmd in kind[3] if shutil.which(cmd[0])), None) if parallel else None
            source = _Process(tool, stream, counting) if tool else _Thread(kind[2], stream, counting)
        yield _lines(source, kind[0] if kind else "text", path, size, on_bytes or (lambda n: None))
    finally:
        if source is not None:
            source.close()
        if raw is not sys.stdin.buffer:
            raw.close()


def _lines(source, kind: str, path, size, on_bytes) -> Iterator[list[str]]:
    rest, lines, reported = b"", 0, 0
    while True:
        try:
            data = source.read()
        except (OSError, EOFError, zlib.error) as e:  # truncated or invalid data
            raise MetadataError(path, _problem(kind, e), offset=source.consumed(), size=size, line=lines) from None
        consumed = source.consumed()
        on_bytes(consumed - reported)
        reported = consumed
        if not data:
            break
        cut = data.rfind(b"\n")
        if cut < 0:
            rest += data
            continue
        block = (rest + data[:cut]).decode("utf-8", "replace").split("\n")
        rest = data[cut + 1:]
        lines += len(block)
        yield block
    if rest:
        yield [rest.decode("utf-8", "replace")]


def _problem(kind: str, e: BaseException) -> str:
    if isinstance(e, EOFError):
        return f"the {kind} stream ends early"
    return f"the {kind} data is invalid ({e})"


class _Plain:
    def __init__(self, stream: BinaryIO, counting: _Counting):
        self.stream, self.counting = stream, counting

    def read(self) -> bytes:
        return self.stream.read(BLOCK)

    def consumed(self) -> int:
        return self.counting.count

    def close(self) -> None:
        pass


class _Thread:
    """The standard library's decompressor in a thread, a few blocks ahead of the reader."""

    _END = object()

    def __init__(self, opener, stream: BinaryIO, counting: _Counting):
        self.queue: queue.Queue = queue.Queue(maxsize=4)
        self.stop = threading.Event()
        self.count = 0
        self.thread = threading.Thread(target=self._run, args=(opener, stream, counting), daemon=True,
                                       name="decompress")
        self.thread.start()

    def _run(self, opener, stream, counting) -> None:
        try:
            with opener(stream) as f:
                while not self.stop.is_set():
                    data = f.read1(BLOCK)  # what is decompressed so far: a truncated file still yields its start
                    self.queue.put((data, counting.count))
                    if not data:
                        return
        except BaseException as e:  # handed to the reader, which raises it there
            self.queue.put((e, counting.count))

    def read(self) -> bytes:
        data, self.count = self.queue.get()
        if isinstance(data, BaseException):
            raise data
        return data

    def consumed(self) -> int:
        return self.count

    def close(self) -> None:
        self.stop.set()
        while self.thread.is_alive():  # unblock a put, then the thread sees stop
            try:
                self.queue.get(timeout=0.05)
            except queue.Empty:
                pass
        self.thread.join()


class _Process:
    """A parallel decompressor (``lbzip2``, ``pigz``) as a child process, fed by a thread that counts the bytes."""

    def __init__(self, command: tuple[str, ...], stream: BinaryIO, counting: _Counting):
        self.command, self.counting = command, counting
        self.errors = scratch(Path(tempfile.gettempdir()))
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errors)
        self.fed = 0
        self.feeder = threading.Thread(target=self._feed, args=(stream,), daemon=True, name="feed")
        self.feeder.start()

    def _feed(self, stream: BinaryIO) -> None:
        try:
            while data := stream.read(BLOCK):
                self.process.stdin.write(data)
                self.fed += len(data)
        except (BrokenPipeError, ValueError, OSError):  # the child stopped (error, or the reader is done)
            pass
        finally:
            try:
                self.process.stdin.close()
            except OSError:
                pass

    def read(self) -> bytes:
        data = self.process.stdout.read(BLOCK)
        if not data and self.process.wait() != 0:
            self.feeder.join()
            self.errors.seek(0)
            said = self.errors.read().decode("utf-8", "replace").strip().splitlines()
            raise OSError(f"{self.command[0]} exited with status {self.process.returncode}"
                          + (f": {said[-1]}" if said else ""))
        return data

    def consumed(self) -> int:
        return self.fed

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.feeder.join()
        self.process.stdout.close()
        self.errors.close()
