"""Decoding: fetched bytes -> RGB array, refusing anything that is not one complete image.

``cv2.imdecode`` happily returns a half-grey picture for a truncated JPEG, so
JPEG and PNG bodies are first checked for their end markers; an HTML error
page or any other non-image fails to decode.
"""

from __future__ import annotations

from typing import Union

import cv2
import numpy as np
from numpy.typing import NDArray

from .records import Skip, SkipReason

_JPEG_START, _JPEG_END = b"\xff\xd8", b"\xff\xd9"
_PNG_START, _PNG_END = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"


def _truncation(data: bytes) -> str:
    if data.startswith(_JPEG_START) and not data.rstrip(b"\x00\r\n ").endswith(_JPEG_END):
        return "JPEG without end-of-image marker (truncated)"
    if data.startswith(_PNG_START) and not data.endswith(_PNG_END):
        return "PNG without IEND chunk (truncated)"
    return ""


def decode_image(data: bytes) -> Union[NDArray[np.uint8], Skip]:
    """``(H, W, 3) uint8`` RGB, or a DECODE_ERROR skip."""
    truncated = _truncation(data)
    if truncated:
        return Skip(SkipReason.DECODE_ERROR, truncated)
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        head = data[:32].decode("ascii", errors="replace")
        return Skip(SkipReason.DECODE_ERROR, f"not a decodable image ({len(data)} bytes, starts {head!r})")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
