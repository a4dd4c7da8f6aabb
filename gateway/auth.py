"""API keys: who may use the service, checked for every HTTP request and websocket before the app runs.

Keys come from `MMSTREAM_API_KEYS` (a JSON list) and/or `MMSTREAM_API_KEYS_FILE` (one per line). A
client sends one as `Authorization: Bearer <key>`, or, from a browser that cannot set headers on a
websocket, as the subprotocol `openai-insecure-api-key.<key>` (as with OpenAI's Realtime API).
With no key configured the service is open to clients on this machine only, and says so in the
log. `/healthz`, `/readyz` and the web page's static files are always open; they hold no data.

It also spends the caller's request budget for `/v1` HTTP routes (`gateway.quotas`: 429 when spent).
Every key is compared in constant time with each configured key. A caller is known by a digest of
its key (`owner`), which is what files and batches record; the key itself is never stored, logged
or echoed.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from shared.config import Settings
from shared.errors import ErrorCode, RateLimited

log = logging.getLogger(__name__)

SUBPROTOCOL_PREFIX = "openai-insecure-api-key."
LOCAL_OWNER = "local"
_OPEN_PATHS = ("/healthz", "/readyz", "/", "/favicon.ico")
_OPEN_PREFIXES = ("/static/",)


@dataclass(frozen=True)
class Keys:
    digests: tuple[bytes, ...]  # sha256 of each configured key

    @classmethod
    def from_settings(cls, settings: Settings) -> Keys:
        keys = [k.get_secret_value() for k in settings.api_keys]
        if settings.api_keys_file is not None:
            lines = settings.api_keys_file.read_text().splitlines()
            keys += [line.strip() for line in lines if line.strip() and not line.startswith("#")]
        return cls(tuple(hashlib.sha256(k.encode()).digest() for k in keys))

    def owner(self, presented: str) -> str | None:
        """The caller's owner id if the key is one of ours, else None (constant time per key)."""
        digest = hashlib.sha256(presented.encode()).digest()
        found = False
        for known in self.digests:  # no early exit: the time does not say which key matched
            found |= hmac.compare_digest(digest, known)
        return f"key-{digest.hex()[:16]}" if found else None


def presented_key(scope: Scope) -> str | None:
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    if scope["type"] == "websocket":
        for protocol in scope.get("subprotocols", []):
            if protocol.startswith(SUBPROTOCOL_PREFIX):
                return protocol[len(SUBPROTOCOL_PREFIX) :]
    return None


def chosen_subprotocol(scope: Scope) -> str | None:
    """The subprotocol to accept a websocket with: `realtime` if offered, never the one holding a key
    unless it is all the client offered (a browser fails a handshake that picks none of its offers)."""
    offered: list[str] = list(scope.get("subprotocols", []))
    plain = [p for p in offered if not p.startswith(SUBPROTOCOL_PREFIX)]
    if "realtime" in plain:
        return "realtime"
    candidates = plain or offered
    return candidates[0] if candidates else None


def _is_loopback(scope: Scope) -> bool:
    client = scope.get("client")
    try:
        return client is not None and ipaddress.ip_address(client[0]).is_loopback
    except ValueError:
        return False


class ApiKeyGuard:
    """ASGI middleware: refuse a request without a valid key (401, or a closed websocket: 403)."""

    def __init__(self, app: ASGIApp, keys: Keys) -> None:
        self.app = app
        self.keys = keys
        if not keys.digests:
            log.warning("no API keys configured (MMSTREAM_API_KEYS): only clients on this machine are served")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or _is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        owner = self._owner(scope)
        if owner is None:
            message = "Missing or incorrect API key." if self.keys.digests else "Not served here."
            await _refuse(scope, receive, send, message)
            return
        scope.setdefault("state", {})["owner"] = owner
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            try:
                await scope["app"].state.services.quotas.take(owner, "requests")
            except RateLimited as exc:
                await _refuse(scope, receive, send, exc.message, status=429, retry_after=exc.retry_after_s)
                return
        await self.app(scope, receive, send)

    def _owner(self, scope: Scope) -> str | None:
        if not self.keys.digests:
            return LOCAL_OWNER if _is_loopback(scope) else None
        key = presented_key(scope)
        return None if key is None else self.keys.owner(key)


def owner_of(state: Any) -> str:
    """The owner id the guard put on a request's (or websocket's) state."""
    return str(getattr(state, "owner", LOCAL_OWNER))


def _is_open(path: str) -> bool:
    return path in _OPEN_PATHS or path.startswith(_OPEN_PREFIXES)


async def _refuse(
    scope: Scope, receive: Receive, send: Send, message: str, *, status: int = 401, retry_after: float | None = None
) -> None:
    if scope["type"] == "websocket":
        await receive()  # websocket.connect; closing before accepting answers the handshake with 403
        await send({"type": "websocket.close", "code": 1008, "reason": "unauthorized"})
        return
    code: ErrorCode = "invalid_api_key" if status == 401 else "rate_limit_exceeded"
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    body = json.dumps({"error": error}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    if retry_after is not None:
        headers.append((b"retry-after", str(max(1, round(retry_after))).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
