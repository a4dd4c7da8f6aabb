"""The general-question set of `mmstream eval --suite qa`: short questions with known answers.

Written for this project (not taken from a public benchmark, so no model has trained on it as a test):
facts, arithmetic, follow-ups that need the previous turn, and some of the facts spoken (espeak-ng,
through the audio worker), once with the service's fusion mode and once read from the transcript only.
An answer is right when it names one of the accepted answers as a word or phrase; the first accepted
answer is the canonical one. Model choices are made on this set.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QA:
    id: str
    group: str  # facts, arithmetic, follow-up, spoken
    turns: tuple[str, ...]  # the user's turns; the answer to the last one is scored
    answers: tuple[str, ...]
    spoken: bool = False  # the last turn is sent as speech, not text
    fusion: str | None = None  # the session's fusion mode (None: the service's default)


_FACTS: list[tuple[str, tuple[str, ...]]] = [
    ("What is the capital of France? One word.", ("Paris",)),
    ("What is the capital of Italy? One word.", ("Rome",)),
    ("What is the capital of Japan? One word.", ("Tokyo",)),
    ("What is the capital of Egypt? One word.", ("Cairo",)),
    ("What is the capital of Spain? One word.", ("Madrid",)),
    ("What is the capital of Germany? One word.", ("Berlin",)),
    ("What is the capital of Canada? One word.", ("Ottawa",)),
    ("What is the capital of Australia? One word.", ("Canberra",)),
    ("What is the capital of Russia? One word.", ("Moscow",)),
    ("What is the capital of Greece? One word.", ("Athens",)),
    ("What is the capital of Portugal? One word.", ("Lisbon",)),
    ("What is the capital of Kenya? One word.", ("Nairobi",)),
    ("Which planet in our solar system is the largest? One word.", ("Jupiter",)),
    ("Which planet is known as the Red Planet? One word.", ("Mars",)),
    ("Which planet is closest to the Sun? One word.", ("Mercury",)),
    ("Which planet has the most famous rings? One word.", ("Saturn",)),
    ("What is the largest ocean on Earth? One word.", ("Pacific",)),
    ("What is the longest river in Africa? One word.", ("Nile",)),
    ("On which continent is Brazil? One word.", ("South America", "America")),
    ("On which continent is Kenya? One word.", ("Africa",)),
    ("What is the chemical symbol for gold?", ("Au",)),
    ("What is the chemical symbol for sodium?", ("Na",)),
    ("What gas do plants take in from the air to make food? Answer briefly.", ("carbon dioxide", "CO2")),
    ("What is the freezing point of water in degrees Celsius? Answer with a number.", ("0", "zero")),
    ("What is the boiling point of water in degrees Celsius at sea level? Answer with a number.", ("100",)),
    ("How many legs does a spider have? Answer with a number.", ("8", "eight")),
    ("How many legs does an insect have? Answer with a number.", ("6", "six")),
    ("How many days are in a week? Answer with a number.", ("7", "seven")),
    ("How many months are in a year? Answer with a number.", ("12", "twelve")),
    ("How many minutes are in an hour? Answer with a number.", ("60", "sixty")),
    ("How many hours are in a day? Answer with a number.", ("24", "twenty-four")),
    ("How many sides does a triangle have? Answer with a number.", ("3", "three")),
    ("How many sides does a hexagon have? Answer with a number.", ("6", "six")),
    ("How many continents are there on Earth? Answer with a number.", ("7", "seven")),
    ("What colour do you get by mixing blue and yellow? One word.", ("green",)),
    ("What colour do you get by mixing red and white? One word.", ("pink",)),
    ("What is the opposite of hot? One word.", ("cold",)),
    ("What is the opposite of up? One word.", ("down",)),
    ("What is the plural of mouse? One word.", ("mice",)),
    ("What is the past tense of go? One word.", ("went",)),
    ("Who wrote Romeo and Juliet? Answer with the name.", ("Shakespeare",)),
    ("Who painted the Mona Lisa? Answer with the name.", ("Leonardo", "da Vinci")),
    ("Which animal is known as the king of the jungle? One word.", ("lion",)),
    ("What is the largest mammal on Earth? Answer briefly.", ("blue whale", "whale")),
    ("What is the hardest natural substance? One word.", ("diamond",)),
    ("Which language has the most native speakers in Brazil? One word.", ("Portuguese",)),
    ("What is the currency of Japan? One word.", ("yen",)),
    ("What is the tallest mountain on Earth? Answer briefly.", ("Everest",)),
    ("In which country are the pyramids of Giza? One word.", ("Egypt",)),
    ("Which organ pumps blood through the human body? One word.", ("heart",)),
    ("What do bees make? One word.", ("honey",)),
    ("Which star is at the centre of our solar system? One word.", ("Sun",)),
    ("Which programming language is named after a snake? One word.", ("Python",)),
    ("What is H2O commonly called? One word.", ("water",)),
    ("What is the capital of the United Kingdom? One word.", ("London",)),
    ("What is the capital of Ireland? One word.", ("Dublin",)),
    ("How many wheels does a bicycle have? Answer with a number.", ("2", "two")),
    ("What do caterpillars turn into? One word.", ("butterflies", "butterfly", "moths", "moth")),
    ("Which metal is liquid at room temperature? One word.", ("mercury",)),
    ("In which country is the Eiffel Tower? One word.", ("France",)),
]

_NUMBER_WORDS = {
    0: "zero", 1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight",
    9: "nine", 10: "ten", 11: "eleven", 12: "twelve",
}  # fmt: skip

_ARITHMETIC: list[tuple[str, int]] = [
    ("What is 2 plus 3?", 5),
    ("What is 7 plus 8?", 15),
    ("What is 12 plus 30?", 42),
    ("What is 25 plus 17?", 42),
    ("What is 100 plus 250?", 350),
    ("What is 9 minus 4?", 5),
    ("What is 20 minus 7?", 13),
    ("What is 50 minus 18?", 32),
    ("What is 100 minus 1?", 99),
    ("What is 3 times 4?", 12),
    ("What is 6 times 7?", 42),
    ("What is 9 times 9?", 81),
    ("What is 12 times 12?", 144),
    ("What is 5 times 20?", 100),
    ("What is 8 times 6?", 48),
    ("What is 10 divided by 2?", 5),
    ("What is 81 divided by 9?", 9),
    ("What is 100 divided by 4?", 25),
    ("What is 56 divided by 8?", 7),
    ("What is half of 30?", 15),
    ("What is double 21?", 42),
    ("What is 2 to the power of 5?", 32),
    ("What is the square root of 49?", 7),
    ("What is the square root of 144?", 12),
    ("What is 15 plus 15 plus 15?", 45),
    ("What is 1000 minus 1?", 999),
    ("How many seconds are in two minutes?", 120),
    ("How many days are in two weeks?", 14),
    ("If I have 3 apples and buy 4 more, how many apples do I have?", 7),
    ("A box holds 6 eggs. How many eggs are in 3 boxes?", 18),
]

_FOLLOW_UPS: list[tuple[str, str, tuple[str, ...]]] = [
    (
        "Which planet in our solar system is the largest? One word.",
        "Repeat the name of that planet once more.",
        ("Jupiter",),
    ),
    ("My name is Alice. Say hello to me.", "What is my name? One word.", ("Alice",)),
    ("My name is Omar. Nice to meet you.", "What did I say my name was? One word.", ("Omar",)),
    ("I live in Lisbon.", "Which city do I live in? One word.", ("Lisbon", "Lisboa")),
    ("My favourite colour is green.", "What is my favourite colour? One word.", ("green",)),
    ("My dog is called Rex.", "What is my dog called? One word.", ("Rex",)),
    ("I have 3 cats.", "How many cats do I have? Answer with a number.", ("3", "three")),
    ("What is the capital of Italy? One word.", "And of France? One word.", ("Paris",)),
    ("What is 4 plus 4?", "Now add 2 to that result. Answer with a number.", ("10", "ten")),
    ("What is 5 times 5?", "Now subtract 5 from that result. Answer with a number.", ("20", "twenty")),
    ("Remember the number 47.", "Which number did I ask you to remember?", ("47",)),
    ("I was born in Canada.", "In which country was I born? One word.", ("Canada",)),
    ("My sister is called Maria.", "What is my sister's name? One word.", ("Maria",)),
    ("I am learning to play the violin.", "Which instrument am I learning? One word.", ("violin",)),
    ("Which animal says moo? One word.", "Which sound does that animal make? One word.", ("moo",)),
]

# Facts asked again as speech: short, common words that speech recognition should get.
_SPOKEN = [
    "What is the capital of Japan? One word.",
    "What is the capital of Spain? One word.",
    "What is the capital of Germany? One word.",
    "Which planet is known as the Red Planet? One word.",
    "How many days are in a week? Answer with a number.",
    "How many legs does a spider have? Answer with a number.",
    "What colour do you get by mixing blue and yellow? One word.",
    "What is the opposite of hot? One word.",
    "What do bees make? One word.",
    "Which organ pumps blood through the human body? One word.",
    "What is the largest ocean on Earth? One word.",
    "How many months are in a year? Answer with a number.",
    "In which country are the pyramids of Giza? One word.",
    "Which animal is known as the king of the jungle? One word.",
    "How many hours are in a day? Answer with a number.",
]


def qa_set(*, speech: bool = True) -> list[QA]:
    facts = dict(_FACTS)
    out = [QA(f"fact-{i:02d}", "facts", (q,), a) for i, (q, a) in enumerate(_FACTS)]
    for i, (q, n) in enumerate(_ARITHMETIC):
        answers = (str(n), _NUMBER_WORDS[n]) if n in _NUMBER_WORDS else (str(n),)
        out.append(QA(f"math-{i:02d}", "arithmetic", (q + " Answer with a number.",), answers))
    out += [QA(f"follow-{i:02d}", "follow-up", (a, b), ans) for i, (a, b, ans) in enumerate(_FOLLOW_UPS)]
    if speech:
        out += [QA(f"spoken-{i:02d}", "spoken", (q,), facts[q], spoken=True) for i, q in enumerate(_SPOKEN)]
        # The same speech read from its transcript only: what the speech soft tokens add, or cost.
        out += [
            QA(f"spoken-text-{i:02d}", "spoken, text fusion", (q,), facts[q], spoken=True, fusion="text")
            for i, q in enumerate(_SPOKEN)
        ]
    return out
