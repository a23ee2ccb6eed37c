"""Splitting: train or validation from a stable hash of the photo owner's NSID.

Hashing the author (not the photo or the face) keeps every author's faces in
one split, so validation measures generalisation to unseen people and
photographers; and since the hash depends on nothing but the NSID, resuming,
reordering or growing a build never moves a face between splits.
"""

from __future__ import annotations

import hashlib

SPLITS = ("train", "val")


def split_of(user_nsid: str, val_fraction: float) -> str:
    digest = hashlib.sha256(user_nsid.encode("utf-8")).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64  # uniform in [0, 1)
    return "val" if position < val_fraction else "train"
