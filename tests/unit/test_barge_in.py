"""The barge-in rule on its own: which speech over a spoken reply interrupts it, and what is held."""

from __future__ import annotations

from gateway.realtime.barge_in import BargeIn
from shared.config import Settings
from shared.messages import AudioCommitted, SessionEvent, SpeechStarted, SpeechStopped, TranscriptDelta, TranscriptDone


class Reply:
    def __init__(self, speaking: bool = True) -> None:
        self.speaking = speaking
        self.held = False
        self.interrupted: list[list[str]] = []
        self.dropped: list[str] = []

    def rule(self) -> BargeIn:
        s = Settings()

        async def interrupt(events: list[SessionEvent]) -> None:
            self.interrupted.append([e.type for e in events])

        async def drop(item_id: str) -> None:
            self.dropped.append(item_id)

        return BargeIn(
            min_speech_ms=s.barge_in_min_speech_ms,
            words=s.backchannel_words,
            interrupt_words=s.interrupt_words,
            speaking=lambda: self.speaking,
            silence_ms=lambda: 500,
            hold=lambda: setattr(self, "held", True),
            release=lambda: setattr(self, "held", False),
            interrupt=interrupt,
            drop=drop,
        )


def _started(ms: int = 1000) -> SpeechStarted:
    return SpeechStarted(item_id="item_1", audio_start_ms=ms)


async def test_a_short_backchannel_is_let_go_and_leaves_no_trace():
    reply = Reply()
    rule = reply.rule()
    assert await rule.on_event(_started()) and reply.held
    for event in (
        TranscriptDelta(item_id="item_1", delta="Okay"),
        SpeechStopped(item_id="item_1", audio_end_ms=1500),
        AudioCommitted(item_id="item_1", previous_item_id=None, by_vad=True),
        TranscriptDone(item_id="item_1", transcript="Okay.", duration_s=0.5),
    ):
        assert await rule.on_event(event)  # held, never handed on
    assert not reply.held and reply.dropped == ["item_1"] and reply.interrupted == []


async def test_an_interrupt_word_or_two_other_words_interrupt_at_once_with_the_held_events():
    for delta in ("Wait", "Tell me"):
        reply = Reply()
        rule = reply.rule()
        await rule.on_event(_started())
        await rule.on_event(TranscriptDelta(item_id="item_1", delta=delta))
        assert reply.interrupted == [["speech_started", "transcript_delta"]], delta
        # Afterwards the speech's events go the usual way.
        assert not await rule.on_event(TranscriptDelta(item_id="item_1", delta=" more"))


async def test_one_unknown_word_waits_and_long_speech_interrupts():
    reply = Reply()
    rule = reply.rule()
    await rule.on_event(_started(1000))
    await rule.on_event(TranscriptDelta(item_id="item_1", delta="Guarded"))  # "got it", misheard
    assert reply.interrupted == []
    await rule.on_event(SpeechStopped(item_id="item_1", audio_end_ms=2200))  # 1.2 s of speech
    assert reply.interrupted == [["speech_started", "transcript_delta", "speech_stopped"]]


async def test_speech_while_nothing_is_spoken_goes_the_usual_way():
    reply = Reply(speaking=False)
    rule = reply.rule()
    assert not await rule.on_event(_started())
    assert not reply.held
