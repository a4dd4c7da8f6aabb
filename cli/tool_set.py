"""The held-out function-calling set of `mmstream eval --suite tools`: tools, questions and the call each wants.

Eight functions; each case offers four of them (the one it needs among others, in a seeded order) and
asks in the user's words. Three kinds of case:
- `call`: the right function with the right arguments;
- `none`: no offered tool fits, the reply must be text;
- `after result`: a call was made and answered; either the next user turn needs another call, or the
  reply must say what the tool returned (no call).
An argument matches when it equals the expected value (strings without regard to case or surrounding
spaces, numbers by value).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

_STR: dict[str, Any] = {"type": "string"}
FUNCTIONS: dict[str, dict[str, Any]] = {
    "get_weather": {
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {**_STR, "description": "City name, e.g. Paris"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
    "get_time": {
        "description": "Get the current local time in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {**_STR, "description": "City name, e.g. Tokyo"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
    "convert_currency": {
        "description": "Convert an amount of money from one currency to another.",
        "parameters": {
            "type": "object",
            "properties": {
                "amount": {"type": "number"},
                "from_currency": {**_STR, "description": "ISO 4217 code, e.g. USD"},
                "to_currency": {**_STR, "description": "ISO 4217 code, e.g. EUR"},
            },
            "required": ["amount", "from_currency", "to_currency"],
            "additionalProperties": False,
        },
    },
    "set_timer": {
        "description": "Start a countdown timer.",
        "parameters": {
            "type": "object",
            "properties": {"minutes": {"type": "integer", "minimum": 1}},
            "required": ["minutes"],
            "additionalProperties": False,
        },
    },
    "send_email": {
        "description": "Send an email.",
        "parameters": {
            "type": "object",
            "properties": {"to": {**_STR, "description": "Email address"}, "subject": _STR},
            "required": ["to", "subject"],
            "additionalProperties": False,
        },
    },
    "get_stock_price": {
        "description": "Get the latest price of a stock.",
        "parameters": {
            "type": "object",
            "properties": {"symbol": {**_STR, "description": "Ticker symbol, e.g. AAPL"}},
            "required": ["symbol"],
            "additionalProperties": False,
        },
    },
    "translate": {
        "description": "Translate a text into another language.",
        "parameters": {
            "type": "object",
            "properties": {"text": _STR, "target_language": {**_STR, "description": "Language name, e.g. German"}},
            "required": ["text", "target_language"],
            "additionalProperties": False,
        },
    },
    "search_flights": {
        "description": "Search flights between two cities.",
        "parameters": {
            "type": "object",
            "properties": {"origin": {**_STR, "description": "City"}, "destination": {**_STR, "description": "City"}},
            "required": ["origin", "destination"],
            "additionalProperties": False,
        },
    },
}


@dataclass(frozen=True)
class Expected:
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ToolCase:
    id: str
    kind: str  # "call", "none", "after result"
    messages: list[dict[str, Any]]
    tools: list[str]
    expected: Expected | None  # None: no call, a text reply
    answer_has: str = ""  # for a text reply after a result: what it must say

    def tools_param(self) -> list[dict[str, Any]]:
        return [{"type": "function", "function": {"name": n, **FUNCTIONS[n]}} for n in self.tools]


_CITIES = [
    "Paris",
    "Tokyo",
    "Berlin",
    "Madrid",
    "Rome",
    "Cairo",
    "Sydney",
    "Toronto",
    "Lisbon",
    "Oslo",
    "Seoul",
    "Lima",
]
_CURRENCIES = [
    (100, "dollars", "USD", "euros", "EUR"),
    (250, "euros", "EUR", "yen", "JPY"),
    (40, "pounds", "GBP", "dollars", "USD"),
    (1000, "yen", "JPY", "euros", "EUR"),
    (75, "Swiss francs", "CHF", "pounds", "GBP"),
    (12.5, "euros", "EUR", "dollars", "USD"),
    (20, "euros", "EUR", "pounds", "GBP"),
    (500, "dollars", "USD", "yen", "JPY"),
    (60, "pounds", "GBP", "euros", "EUR"),
    (3000, "yen", "JPY", "dollars", "USD"),
    (15, "dollars", "USD", "Swiss francs", "CHF"),
    (80, "euros", "EUR", "Swiss francs", "CHF"),
]
_STOCKS = [("Apple", "AAPL"), ("Microsoft", "MSFT"), ("Tesla", "TSLA"), ("Amazon", "AMZN"), ("Nvidia", "NVDA")]
_TRANSLATIONS = [
    ("good morning", "French"),
    ("thank you very much", "German"),
    ("where is the station", "Spanish"),
    ("I love books", "Italian"),
    ("see you tomorrow", "Japanese"),
    ("happy birthday", "Portuguese"),
    ("the weather is nice", "Dutch"),
    ("how much does it cost", "Korean"),
    ("good night", "Swedish"),
]
_EMAILS = [
    ("anna@example.com", "Lunch on Friday"),
    ("bob@example.org", "Project update"),
    ("li@example.net", "Meeting notes"),
    ("sam@example.com", "Invoice"),
]
_NONE = [
    "What is 2 plus 2?",
    "Tell me a joke about cats.",
    "Who wrote Romeo and Juliet?",
    "Write a haiku about the sea.",
    "What is the capital of Italy?",
    "How many legs does a spider have?",
    "Explain what a prime number is in one sentence.",
    "What colour do you get by mixing blue and yellow?",
    "Say hello in a friendly way.",
    "What is the boiling point of water in Celsius?",
    "Give me a synonym for happy.",
    "How many days are in a leap year?",
    "What is the largest planet in the solar system?",
    "Spell the word 'necessary' backwards.",
    "Who painted the Mona Lisa?",
    "What is 7 times 8?",
    "Name three primary colours.",
    "What does a thermometer measure?",
    "Write one sentence about autumn.",
    "Is a tomato a fruit or a vegetable?",
    "What is the square root of 81?",
    "Which ocean is the largest?",
    "What language is spoken in Brazil?",
    "Recommend a name for a pet goldfish.",
    "What is the opposite of cold?",
]


def _offered(rng: random.Random, needed: str | None, n: int = 4) -> list[str]:
    others = [f for f in FUNCTIONS if f != needed]
    chosen = rng.sample(others, n - (needed is not None)) + ([needed] if needed else [])
    rng.shuffle(chosen)
    return chosen


def _user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def _calls() -> list[tuple[str, str, Expected]]:
    """(kind of question, text, expected call) for the `call` cases."""
    out: list[tuple[str, str, Expected]] = []
    weather = ["What's the weather like in {c} right now?", "Is it raining in {c}?", "How warm is it in {c} today?"]
    times = ["What time is it in {c}?", "What's the local time in {c} now?"]
    for i, city in enumerate(_CITIES):
        out.append(("weather", weather[i % 3].format(c=city), Expected("get_weather", {"city": city})))
        out.append(("time", times[i % 2].format(c=city), Expected("get_time", {"city": city})))
    for amount, src, src_code, dst, dst_code in _CURRENCIES:
        text = f"How much is {amount:g} {src} in {dst}?"
        out.append(
            (
                "currency",
                text,
                Expected("convert_currency", {"amount": amount, "from_currency": src_code, "to_currency": dst_code}),
            )
        )
    for minutes in (5, 10, 15, 25, 45):
        out.append(("timer", f"Set a timer for {minutes} minutes.", Expected("set_timer", {"minutes": minutes})))
    for to, subject in _EMAILS:
        out.append(
            (
                "email",
                f"Send an email to {to} with the subject '{subject}'.",
                Expected("send_email", {"to": to, "subject": subject}),
            )
        )
    for company, symbol in _STOCKS:
        out.append(
            ("stock", f"What is {company}'s stock price ({symbol})?", Expected("get_stock_price", {"symbol": symbol}))
        )
    for text, language in _TRANSLATIONS:
        out.append(
            (
                "translate",
                f"Translate '{text}' into {language}.",
                Expected("translate", {"text": text, "target_language": language}),
            )
        )
    pairs = [
        ("London", "New York"),
        ("Paris", "Rome"),
        ("Tokyo", "Seoul"),
        ("Berlin", "Madrid"),
        ("Oslo", "Lisbon"),
        ("Cairo", "Athens"),
        ("Lima", "Bogota"),
        ("Sydney", "Auckland"),
        ("Toronto", "Chicago"),
        ("Vienna", "Prague"),
    ]
    for origin, destination in pairs:
        out.append(
            (
                "flights",
                f"Find me flights from {origin} to {destination}.",
                Expected("search_flights", {"origin": origin, "destination": destination}),
            )
        )
    return out


def _after_results(rng: random.Random) -> list[ToolCase]:
    cases = []
    results = [
        ("Paris", '{"temperature_c": 31, "sky": "sunny"}', "31"),
        ("Oslo", '{"temperature_c": -4, "sky": "snow"}', "-4"),
        ("Cairo", '{"temperature_c": 38, "sky": "clear"}', "38"),
        ("Lima", '{"temperature_c": 17, "sky": "cloudy"}', "17"),
        ("Seoul", '{"temperature_c": 22, "sky": "rain"}', "22"),
    ]
    follow = [
        ("Tokyo", "get_time"),
        ("Berlin", "get_time"),
        ("Rome", "get_weather"),
        ("Sydney", "get_time"),
        ("Toronto", "get_weather"),
    ]
    for n, ((city, result, fact), (next_city, next_fn)) in enumerate(zip(results, follow, strict=True)):
        first = [
            _user(f"What's the weather like in {city} right now?"),
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": f"call_{n}",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": f'{{"city": "{city}"}}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": f"call_{n}", "content": result},
        ]
        tools = _offered(rng, "get_weather")
        if "get_time" not in tools:
            tools[tools.index(next(t for t in tools if t != "get_weather"))] = "get_time"
        cases.append(ToolCase(f"result-answer-{n}", "after result", first, tools, None, answer_has=fact))
        question = "And what time is it in {c}?" if next_fn == "get_time" else "And what about the weather in {c}?"
        later = [
            *first,
            {"role": "assistant", "content": f"It is {fact} °C in {city}."},
            _user(question.format(c=next_city)),
        ]
        cases.append(ToolCase(f"result-next-{n}", "after result", later, tools, Expected(next_fn, {"city": next_city})))
    return cases


def tool_set(seed: int = 1) -> list[ToolCase]:
    """The whole set, in a fixed order for a seed (which tools each case offers, and in what order)."""
    rng = random.Random(seed)
    cases = [
        ToolCase(f"call-{group}-{n}", "call", [_user(text)], _offered(rng, expected.name), expected)
        for n, (group, text, expected) in enumerate(_calls())
    ]
    cases += [ToolCase(f"none-{n}", "none", [_user(text)], _offered(rng, None), None) for n, text in enumerate(_NONE)]
    return cases + _after_results(rng)
