"""Image sizes read from file headers (PNG, JPEG, GIF, WebP), and what an image costs a model.

Reading the few bytes that state the size keeps Pillow out of the engine: the bot only needs
to know an image's type and size, never to decode its pixels.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct

IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
# OpenAI's accounting for `detail: high` (and `auto`, which picks high for large images):
# fit in 2048×2048, then shortest side down to 768, 170 tokens per 512-px tile plus 85.
FIT_SIDE = 2048
SHORT_SIDE = 768
TILE = 512
PER_TILE = 170
PER_IMAGE = 85
UNKNOWN_SIZE_TOKENS = PER_TILE * 8 + PER_IMAGE  # the most any image costs: 768×2048, 8 tiles
HEADER_CHARS = 64 * 1024  # base64 read first; a JPEG's size can sit after a long EXIF block

JPEG_SIZE_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header of a PNG, JPEG, GIF or WebP; None otherwise."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR":
        return _positive(*struct.unpack(">II", data[16:24]))
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return _positive(*struct.unpack("<HH", data[6:10]))
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_size(data)
    return None


def image_mime(data: bytes) -> str | None:
    """The image type the bytes are, by their signature (not what a file claims to be)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _positive(width: int, height: int) -> tuple[int, int] | None:
    return (width, height) if width > 0 and height > 0 else None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Walk the JPEG's segments to the start of frame, which states the size."""
    at = 2
    while at + 9 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
            at += 2
            continue
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        if marker in JPEG_SIZE_MARKERS:
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return _positive(width, height)
        at += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return _positive(width, height)
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return _positive((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return _positive(width & 0x3FFF, height & 0x3FFF)
    return None


def size_of_base64(encoded: str) -> tuple[int, int] | None:
    """The size of a base64-encoded image: from its first bytes, else from all of it."""
    head = encoded[:HEADER_CHARS]
    for chunk in (head, encoded) if len(head) < len(encoded) else (head,):
        try:
            size = image_size(base64.b64decode(chunk[: len(chunk) // 4 * 4]))
        except (binascii.Error, ValueError):
            return None
        if size is not None:
            return size
    return None


def image_tokens(width: int, height: int) -> int:
    """What OpenAI counts for an image sent at `detail: high` (or `auto`)."""
    scale = min(1.0, FIT_SIDE / max(width, height))
    scale *= min(1.0, SHORT_SIDE / (min(width, height) * scale))
    tiles = math.ceil(width * scale / TILE) * math.ceil(height * scale / TILE)
    return PER_TILE * tiles + PER_IMAGE


def data_url_tokens(url: str) -> int:
    """What an image given as a `data:` URL costs; the most an image can when its size is
    unknown (another URL, an unreadable header)."""
    _, _, encoded = url.partition(";base64,")
    size = size_of_base64(encoded) if encoded else None
    return image_tokens(*size) if size else UNKNOWN_SIZE_TOKENS
