"""Decoding: fetched bytes -> RGB array, refusing anything that is not one complete image of a bounded size.

Before anything is decoded, the image's header is read for its size (Pillow's format plugins read headers
only), and a photo declaring more pixels than the cap is refused: a 10 KB lossless WebP can declare
16000 x 16000 pixels, 768 MB decoded. Only formats whose size can be read that way are decoded at all (JPEG,
PNG, WebP, TIFF, BMP, PNM, Sun raster, JPEG 2000); OpenCV would decode others too (Radiance HDR, PFM, PAM),
but their size could not be checked first. ``cv2.imdecode`` happily returns a half-grey picture for a truncated
JPEG, so JPEG and PNG bodies are checked for their end markers; bytes after the end marker (a camera's trailer,
an appended thumbnail) are allowed, as browsers and libjpeg allow them.
"""

from __future__ import annotations

import io
import struct
from typing import Optional, Union

import cv2
import numpy as np
from numpy.typing import NDArray

from .records import Skip, SkipReason

_JPEG_START, _JPEG_END, _JPEG_SCAN = b"\xff\xd8", b"\xff\xd9", b"\xff\xda"
_PNG_START, _PNG_END = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"
#: Flickr originals run to ~150 MP (medium-format cameras, stitched panoramas); this is ~600 MB decoded.
DEFAULT_MAX_PIXELS = 200_000_000
#: Pillow's names of the formats OpenCV decodes whose size Pillow reads from the header alone (WebP's is read
#: here: Pillow's WebP plugin makes libwebp's decoder, which allocates the whole canvas, just to open a file)
SIZED_FORMATS = ("JPEG", "PNG", "TIFF", "BMP", "PPM", "SUN", "JPEG2000")
#: what a Pillow plugin raises on data that is not its format, or is damaged before the size
_NOT_THIS_FORMAT = (SyntaxError, OSError, ValueError, EOFError, IndexError, KeyError, TypeError, struct.error)


def declared_size(data: bytes) -> Optional[tuple[int, int]]:
    """``(width, height)`` as the image's header declares it, without decoding; None when no format of
    :data:`SIZED_FORMATS` reads it.

    Pillow's plugins are called directly rather than through ``Image.open``, whose own decompression-bomb
    check would refuse sizes this module's cap may allow.
    """
    from PIL import Image

    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_size(data)
    Image.init()
    head = data[:32]
    for name in SIZED_FORMATS:
        factory, accept = Image.OPEN.get(name, (None, None))
        if factory is None or (accept is not None and not accept(head)):
            continue
        try:
            with factory(io.BytesIO(data)) as image:
                width, height = image.size
        except _NOT_THIS_FORMAT:
            continue
        if width > 0 and height > 0:
            return width, height
    return None


def _webp_size(data: bytes) -> Optional[tuple[int, int]]:
    """A WebP's canvas size from its first chunk (lossy ``VP8 ``, lossless ``VP8L``, extended ``VP8X``)."""
    chunk, body = data[12:16], data[20:30]
    if len(body) < 10:
        return None
    if chunk == b"VP8 " and body[3:6] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", body[6:10])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and body[0] == 0x2F:
        bits = int.from_bytes(body[1:5], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        return int.from_bytes(body[4:7], "little") + 1, int.from_bytes(body[7:10], "little") + 1
    return None


def _first_scan(data: bytes) -> int:
    """Where a JPEG's first scan starts, walking its segments by their lengths (an EXIF thumbnail inside one
    has markers of its own); -1 when the data ends first."""
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return -1
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD7:  # no length field
            i += 2
        elif marker == _JPEG_SCAN[1]:
            return i
        else:
            i += 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
    return -1


def _truncation(data: bytes) -> str:
    if data.startswith(_JPEG_START):
        scan = _first_scan(data)
        if scan < 0 or data.find(_JPEG_END, scan) < 0:
            return "JPEG without end-of-image marker (truncated)"
    if data.startswith(_PNG_START) and data.rfind(_PNG_END) < 0:
        return "PNG without IEND chunk (truncated)"
    return ""


def decode_image(data: bytes, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> Union[NDArray[np.uint8], Skip]:
    """``(H, W, 3) uint8`` RGB, or a DECODE_ERROR skip, or TOO_LARGE when the declared size is over ``max_pixels``."""
    size = declared_size(data)
    if size is None:
        head = data[:32].decode("ascii", errors="replace")
        return Skip(SkipReason.DECODE_ERROR, f"not an image whose size can be read before decoding ({len(data)} "
                                             f"bytes, starts {head!r})")
    if max_pixels is not None and size[0] * size[1] > max_pixels:
        return Skip(SkipReason.TOO_LARGE, f"{size[0]}x{size[1]} pixels declared, over the cap of {max_pixels:,}")
    truncated = _truncation(data)
    if truncated:
        return Skip(SkipReason.DECODE_ERROR, truncated)
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as e:  # over OpenCV's own cap, say
        return Skip(SkipReason.DECODE_ERROR, f"OpenCV refused it: {str(e).strip().splitlines()[-1]}")
    if image is None:
        head = data[:32].decode("ascii", errors="replace")
        return Skip(SkipReason.DECODE_ERROR, f"not a decodable image ({len(data)} bytes, starts {head!r})")
    if sorted(image.shape[:2]) != sorted(size):  # (turned by its EXIF orientation: sides swapped)
        # another format than the header read (a file that is two at once): not what was checked, not kept
        return Skip(SkipReason.DECODE_ERROR, f"decoded {image.shape[1]}x{image.shape[0]}, declared {size[0]}x{size[1]}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
