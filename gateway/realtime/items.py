"""Conversation items: checking those a client creates, taking the speech out, announcing them."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from gateway.realtime.client_socket import ClientSocket
from shared.config import Settings
from shared.errors import InvalidRequest
from shared.messages import (
    AudioFormat,
    ConversationItemAdded,
    ConversationItemCreated,
    ConversationItemDone,
    FunctionCallItem,
    FunctionCallOutputItem,
    InputAudio,
    InputImage,
    InputText,
    Item,
    OutputAudio,
    OutputText,
)
from shared.pcm import TARGET_RATE, InputConverter

_ALLOWED = {"user": (InputText, InputAudio, InputImage), "system": (InputText,), "assistant": (OutputText, OutputAudio)}
_MAX_PICTURES = 8


@dataclass(frozen=True)
class CheckedItem:
    item: Item  # as stored: id and status filled in, media taken out
    speech: bytes | None  # 16 kHz PCM16 of its input_audio part
    pictures: list[tuple[int, str]]  # (content index, image_url) of its input_image parts


def check_length(text: str, limit: int, param: str) -> None:
    if len(text) > limit:
        raise InvalidRequest(f"'{param}' is longer than {limit} characters.", param=param)


def checked_item(item: Item, settings: Settings, fmt: AudioFormat) -> CheckedItem:
    if isinstance(item, FunctionCallItem):
        check_length(item.arguments, settings.max_text_chars, "item.arguments")
        return CheckedItem(item.model_copy(update={"status": "completed"}), None, [])
    if isinstance(item, FunctionCallOutputItem):
        check_length(item.output, settings.max_text_chars, "item.output")
        return CheckedItem(item.model_copy(update={"status": "completed"}), None, [])
    if not item.content:
        raise InvalidRequest("A message needs at least one content part.", param="item.content")
    speech: bytes | None = None
    pictures: list[tuple[int, str]] = []
    content: list[InputText | OutputText | OutputAudio | InputAudio | InputImage] = []
    for index, part in enumerate(item.content):
        if not isinstance(part, _ALLOWED[item.role]):
            raise InvalidRequest(
                f"Content of type {part.type!r} is not allowed in a {item.role} message.", param="item.content.type"
            )
        if isinstance(part, InputAudio):
            if speech is not None:
                raise InvalidRequest("A message holds at most one audio part.", param="item.content")
            speech = _speech(part, settings, fmt)
            content.append(InputAudio(type="input_audio"))
        elif isinstance(part, InputImage):
            if not part.image_url:
                raise InvalidRequest(
                    "An input_image part needs 'image_url'.",
                    code="missing_required_parameter",
                    param="item.content.image_url",
                )
            pictures.append((index, part.image_url))
            content.append(InputImage(type="input_image", detail=part.detail))
        elif isinstance(part, OutputAudio):  # what was said is kept; the audio itself is not
            check_length(part.transcript, settings.max_text_chars, "item.content.transcript")
            content.append(OutputAudio(type="output_audio", transcript=part.transcript))
        else:
            check_length(part.text, settings.max_text_chars, "item.content.text")
            content.append(OutputText(type="output_text", text=part.text) if isinstance(part, OutputText) else part)
    if len(pictures) > _MAX_PICTURES:
        raise InvalidRequest(f"A message holds at most {_MAX_PICTURES} pictures.", param="item.content")
    stored = item.model_copy(update={"status": "completed", "content": content})
    return CheckedItem(stored, speech, pictures)


async def announce_item(socket: ClientSocket, item: Item, previous: str | None, *, done: bool) -> None:
    """Tell the client an item is in the conversation; `done` unless transcripts or descriptions are due."""
    await socket.send(ConversationItemAdded(previous_item_id=previous, item=item))
    await socket.send(ConversationItemCreated(previous_item_id=previous, item=item))
    if done:
        await socket.send(ConversationItemDone(previous_item_id=previous, item=item))


def _speech(part: InputAudio, settings: Settings, fmt: AudioFormat) -> bytes:
    if part.transcript is not None and not part.audio:
        raise InvalidRequest("Send the audio itself; transcripts are made here.", param="item.content.audio")
    if not part.audio:
        raise InvalidRequest(
            "An input_audio part needs 'audio' (base64).", code="missing_required_parameter", param="item.content.audio"
        )
    try:
        data = base64.b64decode(part.audio, validate=True)
        samples = InputConverter(fmt.type, getattr(fmt, "rate", 8000)).convert(data)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest(
            f"'audio' is not valid base64 {fmt.type} audio.", code="invalid_audio", param="item.content.audio"
        ) from exc
    if len(samples) > settings.max_audio_buffer_s * TARGET_RATE:
        raise InvalidRequest(
            f"Audio longer than {settings.max_audio_buffer_s:.0f} s.", code="audio_too_long", param="item.content.audio"
        )
    if len(samples) < TARGET_RATE // 10:
        raise InvalidRequest("Audio shorter than 0.1 s.", code="invalid_audio", param="item.content.audio")
    return samples.tobytes()
