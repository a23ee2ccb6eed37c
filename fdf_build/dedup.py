"""Near-duplicates: perceptual hashes of photos and face crops, and the groups of faces whose crops are near-identical.

YFCC100M holds many copies of one photo under other accounts (re-uploads, re-encodes, resized or recoloured
versions). An author-disjoint split cannot keep such a copy's face out of the other split; these hashes can.

The hash is imagehash's pHash (64 bits: the signs of the 8 x 8 lowest DCT frequencies of the 32 x 32 grey
image, against their median), written as imagehash writes it (16 hex digits; ``imagehash.hex_to_hash`` reads
it back). Two faces are near-duplicates when their crops' hashes differ in at most :data:`THRESHOLD` bits; a
group is what those pairs connect. The threshold is measured in ``benchmarks/dedup.py``: recall on copies made
with known transforms, false matches between distinct faces (crowds of look-alike faces in uniforms included).
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional, Sequence

import numpy as np
from numpy.typing import NDArray

#: crop hashes this many bits apart or fewer are the same face (benchmarks/dedup.py: no distinct pair of the
#: test photos' faces is this close, the look-alike crowd faces included; see docs/benchmarks.md)
THRESHOLD = 10
#: ``phash.npy``'s value for a face or photo without a hash (a face of an older build)
MISSING = np.uint64(0)


def phash(rgb: NDArray[np.uint8]) -> str:
    """``(H, W, 3) uint8`` RGB -> imagehash's 64-bit pHash as 16 hex digits."""
    import imagehash
    from PIL import Image

    return str(imagehash.phash(Image.fromarray(rgb)))


def to_uint64(hashes: Iterable[Optional[str]]) -> NDArray[np.uint64]:
    """Hex hashes as ``(N,) uint64`` (imagehash's bit order: first bit most significant); None or "" -> MISSING."""
    return np.array([int(h, 16) if h else 0 for h in hashes], dtype=np.uint64)


_LUT = np.array([bin(i).count("1") for i in range(1 << 16)], dtype=np.uint8)


def hamming(a: NDArray[np.uint64], b: NDArray[np.uint64]) -> NDArray[np.uint8]:
    """Bits that differ between ``a`` and ``b`` (broadcast), by a 16-bit lookup table (numpy 1.x has no popcount)."""
    x = np.ascontiguousarray(np.bitwise_xor(a, b))
    v = x.view(np.uint16).reshape(x.shape + (4,))
    return _LUT[v[..., 0]] + _LUT[v[..., 1]] + _LUT[v[..., 2]] + _LUT[v[..., 3]]


def near_pairs(hashes: NDArray[np.uint64], threshold: int = THRESHOLD, *,
               progress: Optional[Callable[[int], None]] = None) -> Iterable[tuple[int, int]]:
    """Every pair ``i < j`` of hashes at most ``threshold`` bits apart; MISSING hashes pair with nothing.

    Exact, by brute force in blocks of rows (memory stays at ~32 MB): 11-26 ns a pair on one core of a shared
    machine, minutes for FDF256's 250k faces (benchmarks/dedup.py). ``progress(rows)`` is called per block.
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    present = np.flatnonzero(hashes != MISSING)
    h = hashes[present]
    block = max(1, (1 << 22) // max(1, len(h)))
    for start in range(0, len(h), block):
        rows = h[start:start + block]
        close = hamming(rows[:, None], h[None, start:]) <= threshold
        for i, j in zip(*np.nonzero(close)):
            if j > i:
                yield int(present[start + i]), int(present[start + j])
        if progress:
            progress(len(rows))


def groups(hashes: NDArray[np.uint64], threshold: int = THRESHOLD, *,
           progress: Optional[Callable[[int], None]] = None) -> list[list[int]]:
    """Groups of two or more indices joined by near pairs, each sorted, in order of their first index."""
    parent: dict[int, int] = {}

    def root(i: int) -> int:
        while parent.setdefault(i, i) != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in near_pairs(hashes, threshold, progress=progress):
        a, b = root(i), root(j)
        if a != b:
            parent[max(a, b)] = min(a, b)
    members: dict[int, list[int]] = {}
    for i in sorted(parent):
        members.setdefault(root(i), []).append(i)
    return [m for m in members.values() if len(m) > 1]


def left_out(found: Sequence[Sequence[int]], order: Callable[[int], tuple]) -> set[int]:
    """What ``build --dedup`` drops: every face of each group but the first by ``order`` (a total order).

    Keeping one face a group is what makes a group never span train and val, whatever split its owners hash to.
    """
    return {i for group in found for i in sorted(group, key=order)[1:]}
