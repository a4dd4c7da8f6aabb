"""Redis replies as text. The project's clients return bytes, since media and text share them."""

from __future__ import annotations

from typing import Any


def text(value: Any) -> str:
    """A reply (bytes, str, a number or None) as text; None is ''."""
    if isinstance(value, bytes):
        return value.decode()
    return "" if value is None else str(value)
