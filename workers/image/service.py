"""What an image worker process does with an `image.describe` task.

Decode the picture safely, preprocess it the model's way, embed it in a micro-batch with whatever
else arrived at the same moment, tag it zero-shot, and store the embedding (with dtype and shape)
and a description the decoder reads. Camera frames (messages holding only a picture) may be
dropped: a frame that a newer one of the same session overtook while it waited is stale, and a
frame whose embedding is nearly that of the last kept frame adds nothing. Either way the client is
told. Every step is idempotent: a redelivered task finds the description written and stops.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import redis
import torch
from PIL import Image

from shared import media_tasks, streams
from shared.config import Settings
from shared.errors import ModelError
from shared.messages import (
    DescribeImageRequest,
    ImageDescribed,
    ImageDropped,
    ImageEmbedding,
    ImageFailed,
    ImageTag,
    InputImage,
    SessionEvent,
)
from shared.metrics import IMAGE_MMPROJ, WORKER_ERRORS
from shared.models import mmproj_id, resolve_decoder_models, resolve_model
from shared.redis_text import text
from shared.sessions import SessionWriter
from workers.base import ModelService
from workers.image.batcher import MicroBatcher
from workers.image.bundled import BUNDLED_SHA256, BUNDLED_WEIGHTS
from workers.image.clip import ClipModel, Tag
from workers.image.decode import BadImage, decode_image
from workers.image.encoded_cache import EncodedCache, Entry
from workers.image.labels import load_groups
from workers.image.mmproj import MmprojEncoder
from workers.presence import Presence

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Loaded:
    clip: ClipModel
    batcher: MicroBatcher
    pretrained: str
    sha256: str
    mmproj: MmprojEncoder | None  # the language model's own projector, when one is set
    mmproj_sha256: str
    encoded: EncodedCache | None  # what it encoded, by content


class ImageService(ModelService[_Loaded]):
    what = "CLIP model"

    def __init__(self, settings: Settings, client: redis.Redis, presence: Presence) -> None:
        super().__init__(settings, client, presence)
        self._writer = SessionWriter(
            client, self._keys, ttl_s=settings.session_ttl_s, max_items=settings.max_conversation_items
        )
        self._reported = 0.0
        self._mmproj_passes = {"encoder": 0, "cache": 0}

    def _identity(self, models: _Loaded) -> dict[str, Any]:
        identity = {"model": f"{models.clip.name}/{models.pretrained}", "sha256": models.sha256}
        return identity | ({"mmproj": mmproj_id(models.mmproj_sha256)} if models.mmproj else {})

    def shutdown(self) -> None:
        if (loaded := self._models) is not None:
            loaded.batcher.stop()

    def _build(self) -> _Loaded:
        s = self._settings
        torch.set_num_threads(s.image_threads)
        with contextlib.suppress(RuntimeError):  # only possible before torch's first parallel op
            torch.set_num_interop_threads(1)
        pretrained, sha256 = self._pretrained()
        clip = ClipModel(s.clip_model, pretrained, load_groups(s.image_labels_file))
        batcher = MicroBatcher(clip.embed, max_batch=s.image_batch_size, max_wait_s=s.image_batch_wait_ms / 1000)
        mmproj, mmproj_name = self._mmproj()
        encoded = None
        if mmproj is not None and s.encoded_cache_mb > 0:
            encoded = EncodedCache(
                self._r, self._keys, mmproj_name, ttl_s=s.encoded_cache_ttl_s, cap_bytes=s.encoded_cache_mb << 20
            )
        return _Loaded(clip, batcher, s.clip_pretrained, sha256, mmproj, mmproj_name, encoded)

    def _mmproj(self) -> tuple[MmprojEncoder | None, str]:
        """The decoder model's llama.cpp projector, checked against that model, or none."""
        s = self._settings
        if s.decoder_mmproj is None:
            return None, ""
        text, mmproj = resolve_decoder_models(s)
        assert mmproj is not None
        encoder = MmprojEncoder(text.path, mmproj.path, threads=s.image_threads, cpu_variant=s.decoder_cpu_variant)
        return encoder, mmproj.sha256

    def _pretrained(self) -> tuple[str | None, str]:
        """The checkpoint to load, verified by sha256 where it is a file."""
        s = self._settings
        if s.clip_pretrained == "bundled":
            resolved = resolve_model(str(BUNDLED_WEIGHTS), s.models_dir, expected_sha256=BUNDLED_SHA256)
            return str(resolved.path), resolved.sha256
        if s.clip_pretrained.startswith(("/", ".", "~")) or s.clip_pretrained.endswith((".safetensors", ".pt", ".bin")):
            resolved = resolve_model(s.clip_pretrained, s.models_dir, expected_sha256=s.clip_pretrained_sha256)
            return str(resolved.path), resolved.sha256
        if not s.allow_downloads:
            raise ModelError(
                f"CLIP weights {s.clip_pretrained!r} come from the hub and downloads are off; "
                "set MMSTREAM_ALLOW_DOWNLOADS=true or give a checkpoint path"
            )
        return s.clip_pretrained, "hub"

    # --- image.describe ---------------------------------------------------------------------------

    def describe(self, request: DescribeImageRequest) -> None:
        try:
            self._describe(request)
        finally:
            # Whatever became of it (described, dropped as a frame, unreadable, its item deleted), the
            # picture is not needed again; left, it would stay `session_ttl_s`. A worker killed before
            # this point leaves it for the redelivered task.
            self._r.delete(request.blob_key)
            self._r.hdel(
                self._keys.media_tasks(request.session_id),
                media_tasks.field(request.item_id, request.content_index),
            )

    def _describe(self, request: DescribeImageRequest) -> None:
        sid, item_id = request.session_id, request.item_id
        item = self._writer.get_message(sid, item_id)
        part = item.content[request.content_index] if item and request.content_index < len(item.content) else None
        if not isinstance(part, InputImage) or part.description is not None:
            return  # deleted, or already described (a redelivered task)
        if request.frame and (latest := text(self._r.get(self._keys.latest_frame(sid)))) != item_id:
            self._drop(sid, item_id, "stale", latest)
            return
        loaded = self._load()
        try:
            blob = self._blob(request.blob_key)
            picture = decode_image(blob, max_pixels=self._settings.max_image_pixels)
        except BadImage as exc:
            WORKER_ERRORS.labels("image", "invalid_image").inc()
            self._writer.set_description(sid, item_id, request.content_index, "")
            self._emit(
                sid,
                ImageFailed(
                    item_id=item_id,
                    content_index=request.content_index,
                    code="invalid_image",
                    message=f"The picture could not be read: {exc}.",
                ),
            )
            return
        embedding = loaded.batcher.submit(loaded.clip.pixels(picture)).result(timeout=60)
        self._report_batches(loaded.batcher)
        if request.frame and (kept := self._duplicate_of(sid, embedding)) is not None:
            self._drop(sid, item_id, "duplicate", kept)
            return
        if loaded.mmproj is not None:
            self._encode_natively(loaded, request, picture, blob)
        else:
            self._store_embedding(sid, item_id, request.content_index, embedding, loaded.clip.name)
        if request.frame:
            # Only the newest frame becomes the one later frames are compared with: an older frame
            # embedded in the same batch, or finishing later, must not take its place.
            self._r.eval(
                _KEEP_IF_NEWEST,
                2,
                self._keys.latest_frame(sid),
                self._keys.last_frame(sid),
                item_id,
                f"{item_id}|".encode() + embedding.numpy().tobytes(),
                self._settings.session_ttl_s,
            )
        tags = loaded.clip.tags(embedding)
        description = describe(tags)
        self._writer.set_description(sid, item_id, request.content_index, description)
        self._emit(
            sid,
            ImageDescribed(
                item_id=item_id,
                content_index=request.content_index,
                description=description,
                tags=[ImageTag(group=t.group, label=t.label, score=t.score) for t in tags],
            ),
        )

    def _report_batches(self, batcher: MicroBatcher) -> None:
        """Batch sizes so far, in this worker's presence record (published at most once a second)."""
        self._presence.note(batch_sizes={str(k): v for k, v in sorted(batcher.batch_sizes.items())})
        now = time.monotonic()
        if now - self._reported >= 1.0:
            self._reported = now
            self._presence.update()

    def _duplicate_of(self, sid: str, embedding: torch.Tensor) -> str | None:
        raw: Any = self._r.get(self._keys.last_frame(sid))
        if not raw:
            return None
        kept_id, _, data = raw.partition(b"|")
        previous = torch.from_numpy(np.frombuffer(data, dtype=np.float32).copy())
        if len(previous) != len(embedding):
            return None
        cosine = float(previous @ embedding)
        return kept_id.decode() if cosine >= self._settings.frame_duplicate_cosine else None

    def _drop(self, sid: str, item_id: str, reason: Literal["stale", "duplicate"], kept: str | None) -> None:
        self._writer.delete_item(sid, item_id)
        self._emit(sid, ImageDropped(item_id=item_id, reason=reason, kept_item_id=kept))

    def _store_embedding(self, sid: str, item_id: str, index: int, embedding: torch.Tensor, model: str) -> None:
        key = self._keys.item_image_embedding(sid, item_id, index)
        header = ImageEmbedding(model=model, shape=[int(embedding.shape[0])])
        self._r.hset(key, mapping={"header": header.model_dump_json(), "data": embedding.numpy().tobytes()})
        self._r.expire(key, self._settings.session_ttl_s)

    def _encode_natively(
        self, loaded: _Loaded, request: DescribeImageRequest, picture: Image.Image, blob: bytes
    ) -> None:
        """The picture through the model's own projector, or from the cache when it was encoded before."""
        assert loaded.mmproj is not None
        item_id, index = request.item_id, request.content_index
        digest = EncodedCache.digest(blob)
        entry = loaded.encoded.get(digest) if loaded.encoded else None
        if entry is not None and not _readable(entry):  # written by another version: encoded again
            entry = None
        source = "cache" if entry else "encoder"
        IMAGE_MMPROJ.labels(source).inc()
        self._mmproj_passes[source] += 1  # in the presence record too, where operators and tests read it
        self._presence.note(mmproj_passes=dict(self._mmproj_passes))
        if entry is None:
            try:
                encoded = loaded.mmproj.encode(picture)
            except ModelError as exc:  # a kind of projector the decoder cannot feed yet: the tags stand in
                WORKER_ERRORS.labels("image", "mmproj").inc()
                log.warning("picture %s/%d not encoded by the mmproj: %s", item_id, index, exc)
                return
            data = encoded.embeddings.astype(np.float16)
            header = ImageEmbedding(
                model=mmproj_id(loaded.mmproj_sha256),
                dtype="float16",
                shape=list(data.shape),
                layout=encoded.layout,
                causal=encoded.causal,
            )
            entry = Entry(header.model_dump_json().encode(), data.tobytes())
            if loaded.encoded:
                loaded.encoded.put(digest, entry)
        key = self._keys.item_image_embedding(request.session_id, item_id, index)
        self._r.hset(key, mapping={"header": entry.header, "data": entry.data})
        self._r.expire(key, self._settings.session_ttl_s)

    def _blob(self, key: str) -> bytes:
        data: Any = self._r.get(key)
        if data is None:
            raise BadImage("the picture expired before a worker got to it")
        return bytes(data)

    def _emit(self, sid: str, event: SessionEvent) -> None:
        streams.publish(self._r, self._keys.session_events(sid), event, ttl_s=self._settings.session_ttl_s)


# Groups in the order the description names them; the most asked-about first.
_ORDER = ("colour", "shape", "count", "size", "position", "background")


# KEYS: latest frame, last kept frame. ARGV: item id, kept record, ttl.
_KEEP_IF_NEWEST = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3]) end
"""


def describe(tags: list[Tag]) -> str:
    """What the language model reads: the best label of each group, as `group: label` pairs.

    Measured with the default 0.5B model: asked "what colour ...", it picks the right word from
    "colour: red, shape: circle" every time, but often names the shape from "a red circle".
    """
    return ", ".join(f"{t.group}: {t.label}" for t in sorted(tags, key=lambda t: _rank(t.group)))


def _rank(group: str) -> int:
    return _ORDER.index(group) if group in _ORDER else len(_ORDER)


def _readable(entry: Entry) -> bool:
    try:
        ImageEmbedding.model_validate_json(entry.header)
    except ValueError:
        return False
    return True
