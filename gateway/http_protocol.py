"""uvicorn's HTTP/1.1 protocol (httptools) with a deadline and a size cap on reading request headers.

uvicorn has neither: its keep-alive timeout only runs between requests and every byte resets it, so
a client that sends its headers a byte a second holds a connection (a file descriptor) for ever;
and nothing caps the headers' size, so one client sending header lines as fast as it can grew the
gateway by 3 GB in a second. Here a request's headers must be complete within `timeout_s` of the
connection opening (or of the previous response ending) and within `max_bytes`; otherwise the
connection is closed (after a 431 for the size). Bodies are the app's business
(`gateway.http.limits`); a websocket leaves this protocol once its upgrade request is read.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_TOO_LARGE = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class _HeadersTooLarge(Exception):
    """Raised from the parser's callback: uvicorn then answers through `send_400_response`."""


class _BoundedHeaders(HttpToolsProtocol):
    timeout_s: float
    max_bytes: int
    _deadline: asyncio.TimerHandle | None = None
    _raw_bytes = 0  # read while the headers were still incomplete: a flood that never ends them
    _parsed_bytes = 0  # URL and headers as the parser hands them over: headers that arrive in one read

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._deadline is not None and not self.transport.is_closing():
            self._raw_bytes += len(data)
            if self._raw_bytes > self.max_bytes:
                self._refuse()

    def on_url(self, url: bytes) -> None:
        self._parsed_bytes += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._parsed_bytes += len(name) + len(value) + 4
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm()
        if self._parsed_bytes > self.max_bytes:
            raise _HeadersTooLarge  # the request never reaches the app
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        if self._parsed_bytes > self.max_bytes:
            self._refuse()
        else:
            super().send_400_response(msg)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.timeout_keep_alive_task is not None:  # uvicorn now waits for the next request
            self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._raw_bytes = self._parsed_bytes = 0
        self._deadline = self.loop.call_later(self.timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _refuse(self) -> None:
        self._disarm()
        self.transport.write(_TOO_LARGE)
        self.transport.close()

    def _too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def bounded_http_protocol(timeout_s: float, max_bytes: int) -> type[asyncio.Protocol]:
    """The protocol class to give uvicorn as `http`."""

    class BoundedHeaders(_BoundedHeaders):
        pass

    BoundedHeaders.timeout_s, BoundedHeaders.max_bytes = timeout_s, max_bytes
    return BoundedHeaders
