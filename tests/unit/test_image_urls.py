import base64

import pytest

from gateway.image_urls import _public_address, image_bytes
from shared.config import Settings
from shared.errors import InvalidRequest
from tests.pictures import data_url, picture


async def test_data_urls_are_checked_before_any_decoding():
    settings = Settings(max_image_bytes=50_000)
    good = data_url(picture("circle", "red"))
    assert (await image_bytes(good, settings))[:4] == b"\x89PNG"
    with pytest.raises(InvalidRequest, match="larger than"):
        await image_bytes("data:image/png;base64," + base64.b64encode(b"x" * 60_000).decode(), settings)
    with pytest.raises(InvalidRequest, match="PNG, JPEG, WebP or GIF"):
        await image_bytes(good.replace("image/png", "image/svg+xml"), settings)


async def test_remote_urls_are_refused_unless_enabled_and_never_private():
    with pytest.raises(InvalidRequest, match="not allowed"):
        await image_bytes("https://example.com/a.png", Settings())
    for host in ("127.0.0.1", "10.1.2.3", "169.254.169.254", "::1", "localhost"):
        with pytest.raises(InvalidRequest, match="public"):
            await _public_address(host)
    assert await _public_address("8.8.8.8") == "8.8.8.8"
    with pytest.raises(InvalidRequest, match="public"):
        await image_bytes("http://127.0.0.1:8000/readyz", Settings(allow_remote_media=True))
