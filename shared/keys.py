"""Names of every Redis key the service writes, in one place.

Each key is owned by a session, a response, a file, a batch or the image workers' cache of encoded
pictures and carries a TTL, so nothing outlives its use by long; owners that end delete theirs at
once (a realtime session, when its socket closes, its keys, its items' media and its ended
responses; a worker, an upload it has handled).
The two indexes of files and batches and the set of active batches have no TTL: they are pruned of
entries whose key has gone. tests/e2e/test_soak.py checks all of it.
"""

from __future__ import annotations

from collections.abc import Iterable
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

    # A response: its state hash, its event stream, the cancel flag and the worker's lease. Every job a
    # client waits on lives under these (HTTP transcriptions, and each spoken piece of a reply).
    def response(self, response_id: str) -> str:
        return f"{self.prefix}:response:{response_id}"

    def response_events(self, response_id: str) -> str:
        return f"{self.prefix}:response:{response_id}:events"

    def response_cancel(self, response_id: str) -> str:
        return f"{self.prefix}:response:{response_id}:cancel"

    def response_lease(self, response_id: str) -> str:
        return f"{self.prefix}:response:{response_id}:lease"

    # A session's audio: the input log (gateway -> workers), the worker's state and utterance audio,
    # the lock and scheduling flag around processing, and the events workers send back.
    def audio_log(self, session_id: str) -> str:
        return f"{self.prefix}:audio:{session_id}:log"

    def audio_state(self, session_id: str) -> str:
        return f"{self.prefix}:audio:{session_id}:state"

    def audio_utterance(self, session_id: str) -> str:
        return f"{self.prefix}:audio:{session_id}:utt"

    def audio_lock(self, session_id: str) -> str:
        return f"{self.prefix}:audio:{session_id}:lock"

    def audio_pending(self, session_id: str) -> str:
        return f"{self.prefix}:audio:{session_id}:pending"

    def media_tasks(self, session_id: str) -> str:
        """Hash of the session's picture and speech tasks not yet done (see shared/media_tasks.py)."""
        return f"{self.prefix}:session:{session_id}:media_tasks"

    def item_audio(self, session_id: str, item_id: str) -> str:
        return f"{self.prefix}:audio:{session_id}:item:{item_id}"

    def item_encoder_states(self, session_id: str, item_id: str) -> str:
        return f"{self.prefix}:audio:{session_id}:item:{item_id}:enc"

    # A session's camera frames: the newest frame sent, and the last one kept (id and embedding).
    def latest_frame(self, session_id: str) -> str:
        return f"{self.prefix}:image:{session_id}:latest"

    def last_frame(self, session_id: str) -> str:
        return f"{self.prefix}:image:{session_id}:last"

    def item_image_embedding(self, session_id: str, item_id: str, index: int) -> str:
        return f"{self.prefix}:image:{session_id}:item:{item_id}:{index}:emb"

    # Pictures encoded by a VLM's projector, by content (any session's): each entry, and the cache's
    # index by last use and sizes (workers.image.encoded_cache owns them; all carry TTLs).
    def encoded_picture(self, projector: str, digest: str) -> str:
        return f"{self.prefix}:encoded:{projector}:{digest}"

    def encoded_pictures_lru(self, projector: str) -> str:
        return f"{self.prefix}:encoded:{projector}:lru"

    def encoded_pictures_sizes(self, projector: str) -> str:
        return f"{self.prefix}:encoded:{projector}:sizes"

    def session_events(self, session_id: str) -> str:
        return f"{self.prefix}:session:{session_id}:events"

    def session_scratch(self, session_id: str) -> list[str]:
        """Every per-session key whose name is fixed (`item_media` names those of each item)."""
        return [
            self.session(session_id),
            self.session_items(session_id),
            self.session_order(session_id),
            self.session_events(session_id),
            self.audio_log(session_id),
            self.audio_state(session_id),
            self.audio_utterance(session_id),
            self.audio_pending(session_id),
            self.latest_frame(session_id),
            self.last_frame(session_id),
            self.media_tasks(session_id),
        ]

    def item_media(self, session_id: str, item_id: str, audio: bool, image_indexes: Iterable[int]) -> list[str]:
        """What workers stored for one item: its speech and encoder states, each picture's embedding."""
        media = [self.item_audio(session_id, item_id), self.item_encoder_states(session_id, item_id)] if audio else []
        return media + [self.item_image_embedding(session_id, item_id, i) for i in image_indexes]

    # Uploaded media waiting for a worker (expires on its own).
    def blob(self, blob_id: str) -> str:
        return f"{self.prefix}:blob:{blob_id}"

    # Files (/v1/files): metadata hash and bytes; an index by creation time for listing.
    def file(self, file_id: str) -> str:
        return f"{self.prefix}:file:{file_id}"

    def file_data(self, file_id: str) -> str:
        return f"{self.prefix}:file:{file_id}:data"

    def files_index(self) -> str:
        return f"{self.prefix}:files"

    # Batches (/v1/batches): the record hash, each line's result, each line's attempt, the lease of
    # the gateway driving it, an index for listing and the set of batches still to drive.
    def batch(self, batch_id: str) -> str:
        return f"{self.prefix}:batch:{batch_id}"

    def batch_results(self, batch_id: str) -> str:
        return f"{self.prefix}:batch:{batch_id}:results"

    def batch_attempts(self, batch_id: str) -> str:
        return f"{self.prefix}:batch:{batch_id}:attempts"

    def batch_driver(self, batch_id: str) -> str:
        return f"{self.prefix}:batch:{batch_id}:driver"

    def batches_index(self) -> str:
        return f"{self.prefix}:batches"

    def batches_active(self) -> str:
        return f"{self.prefix}:batches:active"

    # Per-key budgets (gateway.quotas): a counter per key, budget and minute; the key's open sessions.
    def quota(self, owner: str, budget: str, minute: int) -> str:
        return f"{self.prefix}:quota:{owner}:{budget}:{minute}"

    def quota_sessions(self, owner: str) -> str:
        return f"{self.prefix}:quota:{owner}:sessions"

    # Worker presence: one key per worker process, refreshed while its model is loaded.
    def worker(self, kind: str, name: str) -> str:
        return f"{self.prefix}:worker:{kind}:{name}"

    def worker_pattern(self, kind: str) -> str:
        return f"{self.prefix}:worker:{kind}:*"

    # Why a worker process could not start or died (kept a while after it is gone, for /readyz).
    def worker_failure(self, kind: str, name: str) -> str:
        return f"{self.prefix}:worker-failure:{kind}:{name}"

    def worker_failure_pattern(self, kind: str) -> str:
        return f"{self.prefix}:worker-failure:{kind}:*"
