"""Decoding: fetched bytes -> RGB array, refusing anything that is not one complete image.

``cv2.imdecode`` happily returns a half-grey picture for a truncated JPEG, so
JPEG and PNG bodies are first checked for their end markers; an HTML error
page or any other non-image fails to decode. The size a JPEG or PNG declares
in its header is checked against a pixel cap before anything is decoded, so a
small file that claims 40000 x 40000 pixels costs nothing.
"""

from __future__ import annotations

import struct
from typing import Optional, Union

import cv2
import numpy as np
from numpy.typing import NDArray

from .records import Skip, SkipReason

_JPEG_START, _JPEG_END = b"\xff\xd8", b"\xff\xd9"
_PNG_START, _PNG_END = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"
#: Flickr originals run to ~150 MP (medium-format cameras, stitched panoramas); this is ~600 MB decoded.
DEFAULT_MAX_PIXELS = 200_000_000
# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic): not DHT (C4), JPG (C8), DAC (CC)
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def declared_size(data: bytes) -> Optional[tuple[int, int]]:
    """``(width, height)`` as a PNG's IHDR or a JPEG's start-of-frame declares it; None for other data."""
    if data.startswith(_PNG_START) and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24]) if len(data) >= 24 else None
    if not data.startswith(_JPEG_START):
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # no length field
            i += 2
            continue
        if marker == 0xDA:  # start of scan: no frame header before the image data
            return None
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in _JPEG_SOF:
            if i + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        i += 2 + length
    return None


def _truncation(data: bytes) -> str:
    if data.startswith(_JPEG_START) and not data.rstrip(b"\x00\r\n ").endswith(_JPEG_END):
        return "JPEG without end-of-image marker (truncated)"
    if data.startswith(_PNG_START) and not data.endswith(_PNG_END):
        return "PNG without IEND chunk (truncated)"
    return ""


def decode_image(data: bytes, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> Union[NDArray[np.uint8], Skip]:
    """``(H, W, 3) uint8`` RGB, or a DECODE_ERROR skip, or TOO_LARGE when the declared size is over ``max_pixels``."""
    size = declared_size(data)
    if size is not None and max_pixels is not None and size[0] * size[1] > max_pixels:
        return Skip(SkipReason.TOO_LARGE, f"{size[0]}x{size[1]} pixels declared, over the cap of {max_pixels:,}")
    truncated = _truncation(data)
    if truncated:
        return Skip(SkipReason.DECODE_ERROR, truncated)
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as e:  # e.g. a format whose header this module does not read, over OpenCV's own cap
        return Skip(SkipReason.DECODE_ERROR, f"OpenCV refused it: {str(e).strip().splitlines()[-1]}")
    if image is None:
        head = data[:32].decode("ascii", errors="replace")
        return Skip(SkipReason.DECODE_ERROR, f"not a decodable image ({len(data)} bytes, starts {head!r})")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
