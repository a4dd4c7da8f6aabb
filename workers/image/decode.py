"""Pictures from clients -> RGB, safely: format allow-list, pixel limit before decoding, EXIF orientation.

Every way a picture can be bad ends in `BadImage` with a message that names the problem.
"""

from __future__ import annotations

from PIL import Image, ImageOps

from shared.pictures import BadImage, open_image

__all__ = ["BadImage", "decode_image"]


def decode_image(data: bytes, *, max_pixels: int) -> Image.Image:
    """An RGB picture, upright per its EXIF orientation; a GIF gives its first frame."""
    image = open_image(data, max_pixels=max_pixels)
    try:
        image.seek(0)
        image.load()
        image = ImageOps.exif_transpose(image) or image
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise BadImage("the picture is truncated or damaged") from exc
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image.convert("RGB")
