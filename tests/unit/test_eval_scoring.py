from cli.evaluate import predicted_label, score

COLOURS = ("red", "green", "blue")


def test_the_first_label_named_is_the_answer():
    assert predicted_label("Red.", COLOURS) == "red"
    assert predicted_label("It is a blue circle, not red.", COLOURS) == "blue"
    assert predicted_label("I cannot see a picture.", COLOURS) is None
    assert predicted_label("Two stars.", ("star", "circle")) == "star"
    assert predicted_label("It is in the middle", ("left", "center")) == "center"
    assert predicted_label("There are 3 shapes", ("one", "two", "three")) == "three"
    assert predicted_label("reddish", COLOURS) is None


def test_accuracy_macro_recall_and_f1():
    pairs = [("red", "red"), ("red", "blue"), ("blue", "blue"), ("green", None)]
    s = score(pairs, COLOURS)
    assert s.n == 4 and s.accuracy == 0.5
    # recall: red 1/2, blue 1, green 0 -> 0.5; F1: red 2/3, blue 2/3, green 0 -> 0.4444
    assert s.macro_recall == 0.5 and s.macro_f1 == 0.4444


def test_the_qa_set_is_large_enough_and_scored_by_whole_words():
    from cli.qa_eval import is_right
    from cli.qa_set import qa_set

    questions = qa_set()
    assert len({q.turns for q in questions if q.fusion is None}) >= 100
    assert len({q.id for q in questions}) == len(questions)
    assert {q.group for q in questions} == {"facts", "arithmetic", "follow-up", "spoken", "spoken, text fusion"}
    assert all(len(q.turns) == 2 for q in questions if q.group == "follow-up")
    assert is_right("The capital of Egypt is Cairo.", ("Cairo",))
    assert is_right("A spider has 8 legs.", ("8", "eight")) and not is_right("It has 18 legs.", ("8", "eight"))
    assert not is_right("Egyptian", ("Egypt",)) and is_right("Blue whale", ("blue whale", "whale"))


def test_tool_calls_are_scored_by_exact_match_and_text_calls_never_count():
    from cli.tool_eval import score
    from cli.tool_set import tool_set

    cases = {c.id: c for c in tool_set()}
    assert len(cases) >= 100 and {c.kind for c in cases.values()} == {"call", "none", "after result"}
    weather = next(c for c in cases.values() if c.kind == "call" and c.expected and c.expected.name == "get_weather")
    city = weather.expected.arguments["city"] if weather.expected else ""
    assert score(weather, [("get_weather", f'{{"city": " {city.upper()} "}}')], "")["right"]
    assert not score(weather, [("get_weather", '{"city": "Atlantis"}')], "")["right"]
    assert not score(weather, [("get_weather", f'{{"city": "{city}"}}')] * 2, "")["right"]
    bad = score(weather, [("get_weather", '{"town": 1'), ("get_weather", '{"town": "x"}')], "")
    assert (bad["parsed"], bad["valid"]) == (1, 0)
    none = next(c for c in cases.values() if c.kind == "none")
    assert score(none, [], "Four.")["right"]
    assert not score(none, [], "")["right"]
    assert not score(none, [], '{"name": "get_time", "arguments": {}}')["right"]  # a call the server did not read
    answer = next(c for c in cases.values() if c.id.startswith("result-answer"))
    assert score(answer, [], f"It is {answer.answer_has} degrees.")["right"]
    assert not score(answer, [("get_weather", "{}")], "")["right"]
