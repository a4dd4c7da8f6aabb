"""What the parts of one connection share: the session as the client last set it, and its audio buffer.

`connection.py` makes one of these per socket; the client handlers change the session, the relay of
worker events and the response runner read it. One object, so that none of them keeps a stale copy.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.realtime.audio_input import AudioInputBuffer
from shared.messages import Session


@dataclass
class SessionState:
    owner: str  # whose budgets the session spends (gateway.quotas)
    session: Session  # replaced as a whole by each session.update
    audio: AudioInputBuffer

    @property
    def session_id(self) -> str:
        return self.session.id
