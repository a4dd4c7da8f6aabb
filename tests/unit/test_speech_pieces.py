"""Cutting a streamed reply into speakable pieces, and which words of it a truncation keeps."""

from gateway.speech.pieces import PieceCutter, speakable, spoken_form
from gateway.speech.stream import Piece, Spoken


def _cut(deltas: list[str]) -> list[str]:
    cutter = PieceCutter()
    pieces = [p for d in deltas for p in cutter.feed(d)]
    return pieces + cutter.flush()


def test_sentences_become_pieces_as_soon_as_they_end():
    cutter = PieceCutter()
    assert cutter.feed("Paris is the capital.") == []  # the mark counts once what follows it is here
    assert cutter.feed(" It is") == ["Paris is the capital. "]
    assert cutter.feed(" big!\nYes") == ["It is big!\n"]
    assert cutter.flush() == ["Yes"]


def test_the_first_piece_ends_at_its_first_clause_later_ones_run_to_the_sentence():
    text = "Well, the capital of France, which is large, is Paris, and it lies on the Seine. Next."
    pieces = _cut([text[i : i + 3] for i in range(0, len(text), 3)])
    assert "".join(pieces) == text  # nothing lost, nothing doubled, in order
    assert pieces[0] == "Well, the capital of France, "  # past 20 characters, at a comma
    assert pieces[1] == "which is large, is Paris, and it lies on the Seine. "
    assert pieces[2] == "Next."


def test_numbers_and_long_runs():
    assert _cut(["Pi is 3.14 and e is 2.72 roughly"]) == ["Pi is 3.14 and e is 2.72 roughly"]
    words = "word " * 80
    pieces = _cut([words])
    assert "".join(pieces) == words and all(len(p) <= 250 for p in pieces)
    assert all(p.endswith(" ") for p in pieces[:-1])  # cut between words


def test_what_the_voice_reads():
    assert spoken_form("**Paris** is `the` capital:\n- yes") == "Paris is the capital: - yes"
    assert not speakable(spoken_form("*** --- ."))
    assert speakable("42")


def test_truncation_keeps_only_what_was_heard():
    spoken = Spoken(rate=1000)  # 1 sample per ms keeps the arithmetic plain
    spoken.pieces = [Piece("Paris is the capital. ", 1000), Piece("It lies on the Seine river.", 2000)]
    assert spoken.played_ms == 3000
    assert spoken.heard(3000) == "Paris is the capital. It lies on the Seine river."
    assert spoken.heard(1000) == "Paris is the capital."
    assert spoken.heard(1999) == "Paris is the capital. It lies"  # 2 of 6 words fully played
    assert spoken.heard(0) == ""
