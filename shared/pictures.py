"""Reading a picture's header: format and pixel count, checked before any pixel is decoded.

The gateway uses it to refuse bad pictures at once; the image worker uses it before decoding.
"""

from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError

FORMATS = ("PNG", "JPEG", "WEBP", "GIF")


class BadImage(ValueError):
    pass


def open_image(data: bytes, *, max_pixels: int) -> Image.Image:
    """Open lazily (header only) and check the format and size."""
    if not data:
        raise BadImage("the picture is empty")
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise BadImage("the data is not a PNG, JPEG, WebP or GIF picture") from exc
    width, height = image.size
    if width < 1 or height < 1:
        raise BadImage("the picture has no pixels")
    if width * height > max_pixels:
        raise BadImage(f"the picture has {width}x{height} pixels, more than the limit of {max_pixels}")
    return image
