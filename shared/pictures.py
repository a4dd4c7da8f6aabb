"""Reading a picture's header: format and pixel count, checked before any pixel is decoded.

The gateway uses it to refuse bad pictures at once; the image worker uses it before decoding.
"""

from __future__ import annotations

import io

from PIL import Image, PngImagePlugin, UnidentifiedImageError

FORMATS = ("PNG", "JPEG", "WEBP", "GIF")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Opening a PNG, PIL reads and inflates every chunk before the pixels: texts and colour profiles
# of up to 1 MB each, as many as the file holds (5000 profiles took the gateway 11 s), and it keeps
# the texts, up to 64 MB of them by default (64 texts of 1 MB, from a 64 KB file). Real pictures
# hold a handful of chunks and a few KB of text.
MAX_PNG_CHUNKS_BEFORE_PIXELS = 32
PngImagePlugin.MAX_TEXT_MEMORY = 4 << 20  # more: ValueError, a BadImage below


class BadImage(ValueError):
    pass


def open_image(data: bytes, *, max_pixels: int) -> Image.Image:
    """Open lazily (header only) and check the format and size."""
    if not data:
        raise BadImage("the picture is empty")
    if data.startswith(_PNG_SIGNATURE) and _png_chunks_before_pixels(data) > MAX_PNG_CHUNKS_BEFORE_PIXELS:
        raise BadImage(f"the picture holds more than {MAX_PNG_CHUNKS_BEFORE_PIXELS} chunks before its pixels")
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError as exc:  # PIL's own limit, far above ours by default
        raise BadImage(f"the picture has more pixels than the limit of {max_pixels}") from exc
    except (UnidentifiedImageError, OSError) as exc:
        raise BadImage("the data is not a PNG, JPEG, WebP or GIF picture") from exc
    except ValueError as exc:  # e.g. a PNG's text past PIL's limits; it was a server error
        raise BadImage("the picture is malformed or its metadata too large") from exc
    width, height = image.size
    if width < 1 or height < 1:
        raise BadImage("the picture has no pixels")
    if width * height > max_pixels:
        raise BadImage(f"the picture has {width}x{height} pixels, more than the limit of {max_pixels}")
    return image


def _png_chunks_before_pixels(data: bytes) -> int:
    """How many chunks come before the first IDAT (counting stops just past the limit)."""
    count, pos = 0, len(_PNG_SIGNATURE)
    while count <= MAX_PNG_CHUNKS_BEFORE_PIXELS and pos + 8 <= len(data) and data[pos + 4 : pos + 8] != b"IDAT":
        count += 1
        pos += 12 + int.from_bytes(data[pos : pos + 4], "big")  # length, type, data, crc
    return count
