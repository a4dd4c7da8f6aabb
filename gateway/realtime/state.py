"""What the parts of one connection share: the session as the client last set it, its audio buffer, and
what its spoken replies said aloud (for `conversation.item.truncate`).

`connection.py` makes one of these per socket; the client handlers change the session, the relay of
worker events and the response runner read it. One object, so that none of them keeps a stale copy.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from gateway.realtime.audio_input import AudioInputBuffer
from gateway.speech.stream import Spoken
from shared.messages import Session

# Spoken replies a truncation may still name; older ones are forgotten (their transcript stays whole).
_SPOKEN_KEPT = 32


@dataclass
class SessionState:
    owner: str  # whose budgets the session spends (gateway.quotas)
    session: Session  # replaced as a whole by each session.update
    audio: AudioInputBuffer
    spoken: OrderedDict[str, Spoken] = field(default_factory=OrderedDict)  # assistant item id -> its speech

    def remember_spoken(self, item_id: str, spoken: Spoken) -> None:
        self.spoken[item_id] = spoken
        while len(self.spoken) > _SPOKEN_KEPT:
            self.spoken.popitem(last=False)

    @property
    def session_id(self) -> str:
        return self.session.id
