"""How one engine step's reading is split over decode calls (pure logic, no model)."""

from __future__ import annotations

from workers.decoder.engine import _MAX_CALLS, _MIN_CALL_TOKENS, Job, _calls, _Slot, _take


def _runs(*lengths: int) -> list[tuple[_Slot, list[int]]]:
    return [(_Slot(seq), list(range(n))) for seq, n in enumerate(lengths)]


def _shape(calls: list[list[tuple[_Slot, list[int]]]]) -> list[list[int]]:
    return [[len(take) for _, take in call] for call in calls]


def test_generating_sequences_go_in_the_first_call_with_the_shortest_prompts():
    runs = _runs(1, 1, 1, *[30] * 16)  # three generating, sixteen newcomers
    calls = _calls(runs, generating=3)
    assert len(calls) == _MAX_CALLS
    assert _shape(calls)[0][:3] == [1, 1, 1]
    assert [slot for call in calls for slot, _ in call] == [slot for slot, _ in runs]  # order kept


def test_each_call_reads_a_fair_share_and_at_least_the_minimum():
    calls = _calls(_runs(*[30] * 16), generating=0)
    shares = [sum(call) for call in _shape(calls)]
    assert sum(shares) == 16 * 30
    assert all(share >= 16 * 30 // _MAX_CALLS for share in shares[:-1])
    small = _calls(_runs(20, 20, 20), generating=0)
    assert len(small) == 1  # 60 tokens: under one call's minimum
    assert sum(sum(c) for c in _shape(small)) < _MIN_CALL_TOKENS


def test_a_long_prompt_after_short_ones_gets_a_call_of_its_own():
    assert _shape(_calls(_runs(1, 15, 15, 300), generating=1)) == [[1, 15, 15], [300]]
    assert len(_calls(_runs(*[10] * 3, *[500] * 6), generating=0)) == _MAX_CALLS  # never more


def test_only_generating_sequences_make_one_call():
    assert _shape(_calls(_runs(1, 1, 1, 1), generating=4)) == [[1, 1, 1, 1]]
    assert _calls([], generating=0) == []


def test_a_picture_attended_both_ways_is_taken_whole_and_alone():
    picture = [-5, -6, -7, -8]
    slot = _Slot(0, job=Job([1], 8, 0.0, 1.0, 0, 0.0, both_ways=frozenset(picture)), pending=[*picture, -9, 2, 3])
    [(_, take)] = _take([slot], budget=2)
    assert take == picture  # over the budget, and not joined to the causal soft token after it
    other = _Slot(1, job=Job([1], 8, 0.0, 1.0, 0, 0.0), pending=[-5, -6, -7, 4])
    assert _take([other], budget=2)[0][1] == [-5, -6]  # a causal run is cut at the budget
