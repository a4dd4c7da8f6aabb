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
