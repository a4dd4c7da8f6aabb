from workers.audio.agreement import HypothesisBuffer, split_words


def _w(text: str) -> list[str]:
    return split_words(text)


def test_split_words_round_trips():
    assert split_words(" Hello, world.  Yes") == [" Hello,", " world.", "  Yes"]
    assert "".join(split_words(" a b  c")) == " a b  c"


def test_a_word_is_sent_once_two_hypotheses_agree():
    buf = HypothesisBuffer()
    assert buf.insert(_w(" the cat")) == []
    assert buf.insert(_w(" the cat sat")) == [" the", " cat"]
    assert buf.insert(_w(" the cat sat on")) == [" sat"]
    assert buf.text() == " the cat sat"


def test_disagreement_holds_words_back_and_nothing_is_taken_back():
    buf = HypothesisBuffer()
    buf.insert(_w(" I scream"))
    assert buf.insert(_w(" ice cream is")) == []
    assert buf.insert(_w(" ice cream is cold")) == [" ice", " cream", " is"]
    buf.insert(_w(" I scream is cold today"))  # rewrites the past: what was sent stays
    assert buf.text().startswith(" ice cream is")


def test_punctuation_and_case_do_not_block_agreement():
    buf = HypothesisBuffer()
    buf.insert(_w(" Hello, world"))
    assert buf.insert(_w(" hello world. Yes")) == [" hello", " world."]


def test_a_closing_last_word_waits_for_more_audio():
    buf = HypothesisBuffer()
    buf.insert(_w(" What is the capital of?"))
    assert buf.insert(_w(" What is the capital of?")) == [" What", " is", " the", " capital"]
    assert buf.insert(_w(" What is the capital of France?")) == [" of"]
    assert buf.finish() == [" France?"]


def test_committed_words_restated_in_the_window_are_skipped():
    buf = HypothesisBuffer()
    buf.insert(_w(" one two three"))
    buf.insert(_w(" one two three four"))
    assert buf.text() == " one two three"
    # Next hypotheses restate the committed words with small changes; only new words count.
    assert buf.insert(_w(" One, two, three four five")) == [" four"]
    assert buf.insert(_w(" one to three four five six")) == [" five"]
    assert buf.text() == " one two three four five"


def test_trimmed_window_aligns_on_the_words_inside_it():
    buf = HypothesisBuffer(committed=_w(" a b c d e"), pending=_w(" f g"))
    # The window now starts after " a b c": the hypothesis repeats " d e" then continues.
    assert buf.insert(_w(" d e f g h"), words_before_window=3) == [" f", " g"]
    assert buf.pending == [" h"]


def test_finish_commits_the_rest_and_state_round_trips():
    buf = HypothesisBuffer()
    buf.insert(_w(" good morning everyone"))
    restored = HypothesisBuffer.from_state(buf.to_state())
    assert restored.finish() == [" good", " morning", " everyone"]
    assert restored.text() == " good morning everyone"
    assert restored.pending == []


def test_a_sentence_mark_the_next_word_contradicts_is_dropped():
    buffer = HypothesisBuffer()
    buffer.insert(split_words(" What is the capital?"))
    buffer.insert(split_words(" What is the capital? of France"))
    assert buffer.text() == " What is the capital"
    assert buffer.insert(split_words(" What is the capital of France?")) == [" of"]
    assert buffer.finish() == [" France?"]
    assert buffer.text() == " What is the capital of France?"
    kept = HypothesisBuffer()
    kept.insert(split_words(" Stop. Then go"))
    kept.insert(split_words(" Stop. Then go on"))
    assert kept.text() == " Stop. Then go"
