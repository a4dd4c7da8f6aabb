from gateway.http.stops import StopFilter


def _run(stops, pieces):
    f = StopFilter(stops)
    out = "".join(f.push(p) for p in pieces)
    return out + f.flush(), f.stopped


def test_a_stop_sequence_cuts_the_text_even_across_pieces():
    assert _run(["\n\n"], ["one", "\n", "\ntwo"]) == ("one", True)
    assert _run(["END"], ["a E", "N", "D b"]) == ("a ", True)
    assert _run(["x"], ["x"]) == ("", True)


def test_a_partial_match_that_does_not_complete_is_sent():
    assert _run(["END"], ["a EN", "d"]) == ("a ENd", False)
    assert _run(["END"], ["a EN"]) == ("a EN", False)
    assert _run([], ["plain"]) == ("plain", False)


def test_the_earliest_of_several_stops_wins():
    assert _run(["b", "a"], ["xab"]) == ("x", True)
