"""A 200-page course, generated the same way every time: many sections, each with facts
found nowhere else (made-up places, their capitals, rivers and founders), and the questions
those facts answer. Retrieval tests and the materials benchmark read it."""

from __future__ import annotations

import random
from dataclasses import dataclass

PAGES = 200
WORDS_A_PAGE = 500
SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
# Filler: ordinary words, none of which the questions ask about.
FILLER = (
    "students often notice that careful reading of every example helps them build a clear "
    "picture of the topic while practice problems reveal small gaps in understanding and "
    "teachers encourage short summaries written after each lesson because memory works "
    "better with repetition spaced over several days notes diagrams and worked examples "
    "support one another the chapter continues with further remarks on method evidence "
    "reasoning and the habits of good study"
).split()


@dataclass(frozen=True)
class Question:
    text: str
    answer: str


@dataclass(frozen=True)
class Course:
    text: str
    questions: list[Question]


def made_up_word(rng: random.Random, taken: set[str], syllables: int = 3) -> str:
    while True:
        word = "".join(rng.choice(SYLLABLES) for _ in range(syllables))
        if word not in taken:
            taken.add(word)
            return word


def filler(rng: random.Random, words: int) -> str:
    sentences = []
    while words > 0:
        length = min(words, rng.randint(8, 16))
        words -= length
        sentence = " ".join(rng.choice(FILLER) for _ in range(length))
        sentences.append(sentence.capitalize() + ".")
    return " ".join(sentences)


def section(rng: random.Random, number: int, taken: set[str]) -> tuple[str, list[Question]]:
    place = made_up_word(rng, taken).capitalize()
    capital = made_up_word(rng, taken).capitalize()
    founder = made_up_word(rng, taken, 2).capitalize() + " " + made_up_word(rng, taken).capitalize()
    length = str(1000 + number * 7)
    facts = [
        f"The capital of {place} is {capital}.",
        f"The main river of {place} runs {length} kilometres to the sea.",
        f"{place} was founded by the explorer {founder}.",
    ]
    questions = [
        Question(f"What is the capital of {place}?", capital),
        Question(f"How many kilometres does the main river of {place} run?", length),
        Question(f"Which explorer founded {place}?", founder),
    ]
    gap = WORDS_A_PAGE // (len(facts) + 1)
    body = [filler(rng, gap)]
    for fact in facts:
        body += [fact, filler(rng, gap)]
    return f"## Section {number}\n\n" + "\n\n".join(body), questions


def course(pages: int = PAGES, seed: int = 12) -> Course:
    """`pages` sections of about a page each, and the three questions of each section."""
    rng = random.Random(seed)
    taken: set[str] = set(FILLER)
    sections = [section(rng, number, taken) for number in range(1, pages + 1)]
    text = "# A course in made-up geography\n\n" + "\n\n".join(s for s, _ in sections)
    return Course(text, [q for _, questions in sections for q in questions])


def question_set(made: Course, count: int = 30) -> list[Question]:
    """`count` of the course's questions, spread over all of it."""
    step = max(len(made.questions) // count, 1)
    return made.questions[::step][:count]
