"""Build identity: what decides a build's output, recorded when it starts, so a resume never mixes two inputs.

A build's shards are only reusable by a run that would have made the same ones:
the same settings (:meth:`BuildConfig.output_settings`), the same metadata FILE,
the same model weights, and a blocklist that has at most grown. A grown
blocklist is fine: the new entries' photos are skipped in the shards still to
build and filtered out of the finished ones at merge time, while the blocklist
the build started with keeps deciding which photo goes into which shard, so the
finished shards still line up with the rest.

Files are identified by their size and a hash of their first and last MiB:
cheap on a 50 GB YFCC100M file, and any edit, truncation, append or swap for
another file changes it (a hash of the whole file would take minutes).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Mapping, Union

from .sources.filters import Blocklist

#: bytes hashed at each end of a file
EDGE = 1 << 20
STDIN = "-"


def file_identity(path: Union[str, Path]) -> dict:
    """``{"name", "size", "head", "tail"}``: the size and sha256 of the first and last :data:`EDGE` bytes."""
    if str(path) == STDIN:
        return {"name": STDIN}
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(EDGE)
        f.seek(max(0, size - EDGE))
        tail = f.read(EDGE)
    return {"name": Path(path).name, "size": size,
            "head": hashlib.sha256(head).hexdigest(), "tail": hashlib.sha256(tail).hexdigest()}


def same_file(then: Mapping, now: Mapping) -> bool:
    """Whether two identities are of the same bytes (the name may differ: a moved or renamed file is the same)."""
    return all(then.get(k) == now.get(k) for k in ("size", "head", "tail"))


def blocklist_entries(blocklist: Blocklist) -> dict:
    return {"nsids": sorted(blocklist.nsids), "photo_ids": sorted(blocklist.photo_ids)}


def blocklist_from_entries(entries: Mapping) -> Blocklist:
    return Blocklist(frozenset(entries["nsids"]), frozenset(entries["photo_ids"]))


def build_identity(settings: dict, metadata: Union[str, Path], blocklist: Blocklist,
                   weights: Mapping[str, Path]) -> dict:
    """Everything a resumed build must share with the run that started it, as saved in ``build.json``."""
    return {
        "settings": settings,
        "metadata": file_identity(metadata),
        "blocklist": blocklist_entries(blocklist),
        "weights": {model: file_identity(path) for model, path in sorted(weights.items())},
    }


def differences(then: Mapping, now: Mapping) -> list[str]:
    """What differs between the identity a build started with and this run's, in words; empty: may resume."""
    found = []
    settings_then, settings_now = then["settings"], now["settings"]
    for key in sorted(set(settings_then) | set(settings_now)):
        if settings_then.get(key) != settings_now.get(key):
            found.append(f"{key} was {_show(settings_then.get(key))}, now {_show(settings_now.get(key))}")
    meta_then, meta_now = then["metadata"], now["metadata"]
    if (meta_then["name"] == STDIN) != (meta_now["name"] == STDIN) or (
            meta_now["name"] != STDIN and not same_file(meta_then, meta_now)):
        found.append(f"the metadata file is another one: {_describe(meta_then)} then, {_describe(meta_now)} now")
    removed = _removed_entries(then["blocklist"], now["blocklist"])
    if removed:
        found.append(f"{len(removed)} entr{'y was' if len(removed) == 1 else 'ies were'} removed from the blocklist "
                     f"({', '.join(removed[:3])}{', ...' if len(removed) > 3 else ''})")
    weights_then, weights_now = then["weights"], now["weights"]
    for model in sorted(set(weights_then) | set(weights_now)):
        if model in weights_then and model in weights_now and not same_file(weights_then[model], weights_now[model]):
            found.append(f"the {model} weights are another file: {_describe(weights_then[model])} then, "
                         f"{_describe(weights_now[model])} now")
    return found


def _removed_entries(then: Mapping, now: Mapping) -> list[str]:
    nsids = sorted(set(then["nsids"]) - set(now["nsids"]))
    photos = sorted(set(then["photo_ids"]) - set(now["photo_ids"]))
    return nsids + [str(p) for p in photos]


def _describe(identity: Mapping) -> str:
    if identity["name"] == STDIN:
        return "standard input"
    return f"{identity['name']} ({identity['size']:,} bytes, head {identity['head'][:8]}, tail {identity['tail'][:8]})"


def _show(value) -> str:
    if isinstance(value, list):  # licenses
        return ",".join(value)
    return "unset" if value is None else str(value)
