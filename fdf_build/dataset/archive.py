"""Archives: pack a dataset into FDF256's published zips, and extract such zips without trusting them.

The published FDF256 is ``metainfo.zip`` (per split: ``fdf_metainfo.json``,
``landmarks.npy``, ``bounding_box.npy``) plus one image zip per license
(``cc-by-2.zip``, ...), all extracted into the same root. :func:`pack` writes
that from any dataset in the FDF layout, with a manifest, so anyone can host a
mirror. :func:`safe_extract` refuses absolute paths, ``..``, links and special
files, and archives larger than the free disk, and moves files in only after
the whole archive has been extracted to a temporary directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Iterable, Optional, Union

from ..files import clear_leftovers, new_staging_dir
from ..lock import dataset_lock
from ..storage import Storage
from ..sources.filters import license_code
from .layout import IMAGE_MD5S, RECORDS, DatasetError, dataset_splits, load_metainfo, verify_dataset

METAINFO_ARCHIVE = "metainfo"
MANIFEST = "manifest.json"
#: Files of each split that travel in metainfo.zip.
METAINFO_FILES = ("fdf_metainfo.json", "landmarks.npy", "bounding_box.npy", "attribution.csv", "landmarks68.npy",
                  "phash.npy")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed, so packing the same dataset twice gives the same bytes


class UnsafeArchive(Exception):
    """An archive that would write outside its target, or cannot fit; nothing of it has been moved in."""


def archive_name(license_url: str) -> str:
    """The image archive a face goes in: ``cc-by-nc-2`` for CC BY-NC 2.0, as FDF256 named them."""
    code = license_code(license_url)
    return f"cc-{code}-2" if code else "license-other"


def md5_digest(path: Path, chunk: int = 1 << 20):
    """An md5 object fed with the file in 1 MiB blocks (never the whole file in memory); it can be fed on."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest


def md5_file(path: Path) -> str:
    return md5_digest(path).hexdigest()


def write_zip(stream: BinaryIO, members: Iterable[tuple[str, Union[Path, bytes]]]) -> None:
    """A zip of (name, file or bytes) members, in the given order, with fixed dates and modes: same input, same
    bytes. ``stream`` is written front to back (a :class:`~fdf_build.storage.Sink`: local file or object store)."""
    with zipfile.ZipFile(stream, "w") as z:
        for arcname, source in members:
            info = zipfile.ZipInfo(arcname, date_time=_ZIP_DATE)
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            # PNGs are already compressed; deflating them again only costs time.
            info.compress_type = zipfile.ZIP_STORED if arcname.endswith(".png") else zipfile.ZIP_DEFLATED
            with z.open(info, "w") as out:
                if isinstance(source, bytes):
                    out.write(source)
                else:
                    with own_file(source) as f:
                        shutil.copyfileobj(f, out, 1 << 20)


def own_file(path: Path):
    """``path`` opened for reading, refused unless it is a plain file: a link to /etc/passwd is not a face (packs
    and exports copy only the dataset's own files)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        if os.path.islink(path):
            raise DatasetError(f"{path}: a symbolic link; a pack or export holds only the dataset's own files") \
                from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise DatasetError(f"{path}: not a plain file; a pack or export holds only the dataset's own files")
    return os.fdopen(fd, "rb")


def image_md5s(split_dir: Path, keys) -> bytes:
    """``md5sum`` lines for the split's images ``keys``, in key order; a missing image is an error, not a gap."""
    lines = []
    for key in sorted(keys, key=int):
        image = Path(split_dir) / "images" / f"{key}.png"
        if not image.is_file():
            raise DatasetError(f"{image} is missing: a dataset is packed only when all its images are there")
        lines.append(f"{md5_file(image)}  images/{key}.png\n")
    return "".join(lines).encode()


def pack(dataset: Path, out: Union[str, Path], *, base_name: str = "fdf256", metadata_only: bool = False) -> dict:
    """Write ``metainfo.zip``, one zip per license and ``manifest.json`` into ``out`` (a directory or an fsspec
    URL: each zip is written whole or not at all, the manifest last); returns the manifest.

    ``metadata_only`` packs only ``metainfo.zip``, with each split's image md5s
    and the crop geometry added: all that :mod:`~fdf_build.rehydrate` needs to
    recreate the images from Flickr, and no pixels, so a photo its owner deletes
    drops out of every copy made from it.
    """
    dataset, storage = Path(dataset), Storage(out)
    with dataset_lock(dataset, "fdf-build pack", read_only_ok=True):
        splits = dataset_splits(dataset)
        problems = [p for found in verify_dataset(dataset).values() for p in found]
        if problems:  # a mirror of a broken dataset would fail every download of it
            raise DatasetError(f"{dataset} is not a consistent FDF dataset, not packed: {problems[0]}"
                               + (f" (and {len(problems) - 1} more problem(s): fdf-build verify lists them)"
                                  if len(problems) > 1 else ""))
        if storage.remote:  # no lock on an object store, and no temp file to clear: an unfinished upload is no object
            return _pack_locked(dataset, splits, storage, base_name, metadata_only)
        storage.root.mkdir(parents=True, exist_ok=True)
        with dataset_lock(storage.root, "fdf-build pack"):
            clear_leftovers(storage.root)  # the temp zips of a pack killed before
            return _pack_locked(dataset, splits, storage, base_name, metadata_only)


def _pack_locked(dataset: Path, splits: list, storage: Storage, base_name: str, metadata_only: bool) -> dict:
    from .published import GEOMETRY, geometry_record

    # no manifest while the zips change: a mirror half-packed names nothing, rather than old md5s for new zips
    storage.remove([MANIFEST] if storage.exists(MANIFEST) else [])
    groups: dict[str, list[tuple[str, Union[Path, bytes]]]] = {METAINFO_ARCHIVE: []}
    if (dataset / GEOMETRY).is_file() or metadata_only:
        # raises, saying what is missing, when a metadata-only pack could not be recut by anyone
        groups[METAINFO_ARCHIVE].append((GEOMETRY, geometry_record(dataset)))
    licenses: dict[str, str] = {}
    for split, directory in splits:
        for name in METAINFO_FILES:
            if (directory / name).is_file():
                groups[METAINFO_ARCHIVE].append((f"{split}/{name}", directory / name))
        metainfo = load_metainfo(directory)
        if metadata_only:
            groups[METAINFO_ARCHIVE].append((f"{split}/{IMAGE_MD5S}", image_md5s(directory, metainfo)))
            continue
        for key, face in metainfo.items():
            group = archive_name(face.get("license_url", ""))
            licenses[group] = face.get("license_url", "")
            groups.setdefault(group, []).append((f"{split}/images/{key}.png", directory / "images" / f"{key}.png"))
    files = []
    for group, members in groups.items():
        name = f"{group}.zip"
        with storage.open_write(name) as sink:
            write_zip(sink, sorted(members, key=lambda m: m[0]))
        entry = {"name": name, "url": name, "md5": sink.md5, "size": sink.size}
        if group != METAINFO_ARCHIVE:
            entry["license"] = group
            entry["license_url"] = licenses[group]
        files.append(entry)
    manifest = {"name": base_name, "files": files, **({"metadata_only": True} if metadata_only else {})}
    storage.write_bytes(MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return manifest


def _check_member(info: zipfile.ZipInfo) -> Optional[str]:
    name = info.filename
    mode = info.external_attr >> 16
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return f"absolute path {name!r}"
    if "\\" in name or ".." in PurePosixPath(name).parts:
        return f"path leaving the target {name!r}"
    parts = PurePosixPath(name).parts
    if parts and parts[0] in RECORDS:
        return f"{name!r}, the dataset's own record of its removals: only removals write it"
    if any(part.startswith(".") for part in parts):
        return f"hidden path {name!r} (where the dataset keeps its state: locks, journals, shards)"
    if stat.S_ISLNK(mode):
        return f"symbolic link {name!r}"
    # no file-type bits at all (zips made on Windows) means a plain file
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
        return f"special file {name!r}"
    return None


def safe_extract(archive: Path, target: Path) -> int:
    """Extract ``archive`` into ``target``; returns the number of files. Raises UnsafeArchive before writing anything."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as z:
        infos = z.infolist()
        for info in infos:
            problem = _check_member(info)
            if problem:
                raise UnsafeArchive(f"{Path(archive).name}: {problem}")
        needed = sum(i.file_size for i in infos)
        free = shutil.disk_usage(target).free
        if needed > free:
            raise UnsafeArchive(f"{Path(archive).name}: needs {needed:,} bytes, {free:,} free in {target}")
        staging = new_staging_dir(target, f".extract-{Path(archive).stem}-")
        try:
            files = [i for i in infos if not i.is_dir()]
            for info in files:
                z.extract(info, staging)
            for info in files:
                final = target / info.filename
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging / info.filename, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return len(files)
