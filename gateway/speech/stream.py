"""One reply's speech: text in as it streams, audio out in order, each piece spoken by a speech worker.

`add` cuts the text into pieces (`pieces.PieceCutter`) and sends each complete piece to the speech
queue at once, at most `ahead` of them with speech workers at a time, so several speech workers may
speak one reply while the first audio leaves after the first clause. `chunks` yields the audio in
the reply's order whatever order the pieces finish in. `stop` ends it all: pieces still queued are
cancelled (their jobs end unclaimed), pieces being spoken see their cancel flag, and nothing more is
yielded. What each piece said and how long it played is kept (`Spoken`), so that a truncation can
say which words the user heard.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from gateway.speech.pieces import PieceCutter, speakable, spoken_form
from shared.clients import SpeechClient
from shared.config import OPENAI_VOICES, Settings
from shared.errors import InvalidRequest
from shared.messages import AudioChunk, Priority, ResponseFinal, SpeechEncoding, SynthesizeRequest, new_id
from shared.messages.session import AudioFormat

_END = object()
# One audio token per 50 ms of speech: how `usage` counts output audio (an mmstream convention).
AUDIO_TOKEN_MS = 50


def audio_tokens(ms: int) -> int:
    return ms // AUDIO_TOKEN_MS


def check_voice(settings: Settings, voice: str, param: str) -> None:
    """Refuse a voice no speech worker speaks as, naming the ones that are."""
    if not settings.accepts_voice(voice):
        known = ", ".join((*OPENAI_VOICES, settings.voice_name))
        raise InvalidRequest(f"Unknown voice {voice[:64]!r}; use one of: {known}.", param=param)


def encoding_of(fmt: AudioFormat) -> tuple[SpeechEncoding, int]:
    """The speech workers' encoding and rate for a session's `audio.output.format`."""
    if fmt.type == "audio/pcmu":
        return "pcmu", 8000
    if fmt.type == "audio/pcma":
        return "pcma", 8000
    return "pcm16", fmt.rate


@dataclass
class Piece:
    text: str  # as the transcript has it
    samples: int = 0  # audio given out so far, at the output rate


@dataclass
class Spoken:
    """What one reply has said aloud so far, piece by piece."""

    rate: int
    pieces: list[Piece] = field(default_factory=list)
    truncated_ms: int | None = None

    @property
    def played_ms(self) -> int:
        return sum(p.samples for p in self.pieces) * 1000 // self.rate

    def heard(self, end_ms: int) -> str:
        """The transcript of the first `end_ms` of audio: whole pieces, then the words of the piece
        being played in proportion to how far it got (rounded down: nothing the user did not hear)."""
        left = end_ms * self.rate // 1000
        said: list[str] = []
        for piece in self.pieces:
            if piece.samples <= left:
                said.append(piece.text)
                left -= piece.samples
                continue
            words = piece.text.split(" ")
            said.append(" ".join(words[: len(words) * left // piece.samples]))
            break
        return "".join(said).strip()


@dataclass
class _Job:
    piece: Piece
    chunks: asyncio.Queue[object] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None


class SpeechStream:
    def __init__(
        self,
        speech: SpeechClient,
        owner: str,
        *,
        encoding: SpeechEncoding,
        rate: int,
        speed: float,
        ahead: int,
        priority: Priority = "interactive",
    ) -> None:
        self._speech = speech
        self._owner = owner
        self._encoding = encoding
        self._speed = speed
        self._priority = priority
        self._cutter = PieceCutter()
        self._slots = asyncio.Semaphore(ahead)
        self._order: asyncio.Queue[_Job | None] = asyncio.Queue()
        self._jobs: list[_Job] = []
        self.spoken = Spoken(rate=rate)  # `encoding_of` gives G.711 its 8 kHz
        self._rate = rate
        self.failure: ResponseFinal | None = None
        self.stopped = False

    def add(self, text: str) -> None:
        for piece in self._cutter.feed(text):
            self._start(piece)

    def finish(self) -> None:
        """No more text: the rest is the last piece."""
        for piece in self._cutter.flush():
            self._start(piece)
        self._order.put_nowait(None)

    async def chunks(self) -> AsyncIterator[AudioChunk]:
        """The audio of every piece in order; ends after `finish` and the last piece, or at `stop`."""
        while (job := await self._order.get()) is not None:
            while (chunk := await job.chunks.get()) is not _END:
                if self.stopped:
                    return
                assert isinstance(chunk, AudioChunk)
                job.piece.samples += chunk.samples
                yield chunk
            if self.stopped or self.failure is not None:
                return  # a piece that could not be spoken ends the speech: no gap in the middle

    async def stop(self) -> None:
        """Cancel every piece not yet spoken; `chunks` yields nothing more."""
        self.stopped = True
        self._order.put_nowait(None)
        tasks = [job.task for job in self._jobs if job.task is not None and not job.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _start(self, text: str) -> None:
        piece = Piece(text)
        self.spoken.pieces.append(piece)
        job = _Job(piece)
        self._jobs.append(job)
        words = spoken_form(text)
        if speakable(words) and not self.stopped:
            job.task = asyncio.create_task(self._speak(job, words), name="speech-piece")
        else:
            job.chunks.put_nowait(_END)  # nothing to say (punctuation, markup): keeps its place
        self._order.put_nowait(job)

    async def _speak(self, job: _Job, words: str) -> None:
        request = SynthesizeRequest(
            job_id=new_id("speech"), text=words, speed=self._speed, encoding=self._encoding, rate=self._rate
        )
        try:
            async with self._slots:
                events = self._speech.synthesize(request, self._owner, self._priority)
                try:
                    async for event in events:
                        if isinstance(event, AudioChunk):
                            job.chunks.put_nowait(event)
                        elif isinstance(event, ResponseFinal) and event.status == "failed" and self.failure is None:
                            self.failure = event
                    # Ended: its keys go now. (A piece cancelled mid-way keeps its cancel flag for its worker.)
                    await self._speech.forget(request.job_id)
                finally:
                    with contextlib.suppress(Exception):
                        await events.aclose()  # a cancelled piece: the job is cancelled too
        finally:
            job.chunks.put_nowait(_END)
