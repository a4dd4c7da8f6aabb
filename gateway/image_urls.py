"""Pictures in client messages: data URLs (or, when the operator allows it, public http(s) URLs).

The gateway checks what it can without decoding pixels (syntax, size in bytes, format and pixel
count from the header) so most bad pictures get their error at once; decoding happens in the image
worker. Remote URLs are refused unless enabled, and then only http(s) to public addresses, with a
byte cap and a time limit (no server-side request forgery into the private network).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import re
import socket
from urllib.parse import urlparse

import httpx

from shared.config import Settings
from shared.errors import InvalidRequest
from shared.pictures import BadImage, open_image

_DATA_URL = re.compile(
    r"^data:(?P<mime>image/[a-z0-9.+-]+)?(?P<params>(;[^;,]*)*?);base64,(?P<data>.*)$", re.IGNORECASE | re.DOTALL
)
_MIMES = {"image/png", "image/jpeg", "image/jpg", "image/webp", "image/gif"}
PARAM = "item.content.image_url"


async def image_bytes(url: str, settings: Settings) -> bytes:
    """The picture's bytes, checked; raises InvalidRequest naming the problem."""
    if url.startswith("data:"):
        data = _from_data_url(url, settings.max_image_bytes)
    elif url.startswith(("http://", "https://")):
        if not settings.allow_remote_media:
            raise InvalidRequest(
                "Remote image URLs are not allowed here; send the picture as a data URL.",
                code="invalid_image",
                param=PARAM,
            )
        data = await _fetch(url, settings)
    else:
        raise InvalidRequest(
            "image_url must be a data URL (data:image/png;base64,...).", code="invalid_image", param=PARAM
        )
    try:
        # Off the event loop: a header with all the metadata allowed (shared.pictures) takes 0.1 s.
        await asyncio.to_thread(open_image, data, max_pixels=settings.max_image_pixels)
    except BadImage as exc:
        raise InvalidRequest(f"The picture cannot be used: {exc}.", code="invalid_image", param=PARAM) from exc
    return data


def _from_data_url(url: str, max_bytes: int) -> bytes:
    match = _DATA_URL.match(url[: max_bytes * 2])
    if match is None:
        raise InvalidRequest("image_url is not a base64 data URL.", code="invalid_image", param=PARAM)
    mime = (match["mime"] or "").lower()
    if mime not in _MIMES:
        raise InvalidRequest(
            f"Pictures must be PNG, JPEG, WebP or GIF, not {mime or 'unknown'}.", code="invalid_image", param=PARAM
        )
    encoded = match["data"]
    if len(encoded) * 3 // 4 > max_bytes:
        raise InvalidRequest(f"The picture is larger than {max_bytes} bytes.", code="image_too_large", param=PARAM)
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest("The picture's data is not valid base64.", code="invalid_image", param=PARAM) from exc


async def _fetch(url: str, settings: Settings) -> bytes:
    host = urlparse(url).hostname
    if not host:
        raise InvalidRequest("The image URL has no host.", code="invalid_image", param=PARAM)
    # Connect to the address that was checked, so a second DNS answer cannot point elsewhere.
    parsed = urlparse(url)
    address = await _public_address(host)
    pinned_host = f"[{address}]" if ":" in address else address
    pinned = parsed._replace(netloc=f"{pinned_host}:{parsed.port}" if parsed.port else pinned_host).geturl()
    try:
        client = httpx.AsyncClient(timeout=settings.remote_media_timeout_s, follow_redirects=False)
        request = client.stream("GET", pinned, headers={"Host": parsed.netloc}, extensions={"sni_hostname": host})
        async with client, request as reply:
            if reply.status_code != 200:
                raise InvalidRequest(
                    f"Fetching the picture gave HTTP {reply.status_code}.", code="invalid_image", param=PARAM
                )
            data = bytearray()
            async for chunk in reply.aiter_bytes():
                data += chunk
                if len(data) > settings.max_image_bytes:
                    raise InvalidRequest(
                        f"The picture is larger than {settings.max_image_bytes} bytes.",
                        code="image_too_large",
                        param=PARAM,
                    )
    except httpx.HTTPError as exc:
        raise InvalidRequest(
            f"The picture could not be fetched ({type(exc).__name__}).", code="invalid_image", param=PARAM
        ) from exc
    return bytes(data)


async def _public_address(host: str) -> str:
    """Resolve the host and refuse it unless every address it has is public."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise InvalidRequest(f"The image host {host!r} does not resolve.", code="invalid_image", param=PARAM) from exc
    addresses = {str(info[4][0]) for info in infos}
    for address in addresses:
        if not ipaddress.ip_address(address).is_global:
            raise InvalidRequest("Image URLs may only point at public addresses.", code="invalid_image", param=PARAM)
    return next(iter(addresses))
