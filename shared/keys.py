"""Names of every Redis key the service writes, in one place.

Each key is owned by a session or a response and carries a TTL, so nothing outlives its use.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    prefix: str

    # A session: its settings (JSON) and its conversation (item id -> item JSON, plus order).
    def session(self, session_id: str) -> str:
        return f"{self.prefix}:session:{session_id}"

    def session_items(self, session_id: str) -> str:
        return f"{self.prefix}:session:{session_id}:items"

    def session_order(self, session_id: str) -> str:
        return f"{self.prefix}:session:{session_id}:order"

    # A response: its state hash, its event stream, the cancel flag and the worker's lease.
    def response(self, response_id: str) -> str:
        return f"{self.prefix}:response:{response_id}"

    def response_events(self, response_id: str) -> str:
        return f"{self.prefix}:response:{response_id}:events"

    def response_cancel(self, response_id: str) -> str:
        return f"{self.prefix}:response:{response_id}:cancel"

    def response_lease(self, response_id: str) -> str:
        return f"{self.prefix}:response:{response_id}:lease"

    # Worker presence: one key per worker process, refreshed while its model is loaded.
    def worker(self, kind: str, name: str) -> str:
        return f"{self.prefix}:worker:{kind}:{name}"

    def worker_pattern(self, kind: str) -> str:
        return f"{self.prefix}:worker:{kind}:*"
