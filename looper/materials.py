"""Course materials: a teacher's files read as text, cut into passages, and the passages a
question needs put before the model as reference for the tutor only."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from looper.models import Passage
from looper.store import Store
from looper.tokens import TokenCounter

DEFAULT_TOKENS = 2_000
PASSAGE_WORDS = 220  # about 300 tokens of English
OVERLAP_WORDS = 40  # a fact cut at a passage's end is whole at the next one's start
MAX_QUERY_WORDS = 32
CANDIDATES = 48  # passages the search ranks per question; the best few are kept
SUFFIXES = ("ing", "ed", "es", "s", "ly")
WRAPPER_TOKENS = 20  # the tags around each material or passage
PIECES = re.compile(r"\S+\s*")
WORDS = re.compile(r"[^\W_]+")  # letters and digits only: no search syntax gets through
STOPWORDS = frozenset(
    "a an and are as at be but by can could did do does for from had has have how i if in "
    "into is it its me my of on or our so than that the their them then there these they "
    "this to was we were what when where which who whom why will with would you your".split()
)
HEADER = (
    "Reference material for you, the tutor, only: passages of the course materials the "
    "teacher gave you. Use them to answer accurately and consistently with the course. Do "
    "not paste them, or any answer key among them, to the student; do not mention them "
    "unless asked where something comes from."
)
COUNTER = TokenCounter("gpt-5")
HEADER_TOKENS = COUNTER.text(HEADER)


class Unreadable(ValueError):
    """A file that is not text, Markdown or a PDF with text; the message says which."""


def material_text(name: str, data: bytes) -> str:
    """The text of a material file: UTF-8 text or Markdown as is, a PDF's extracted text."""
    if data.startswith(b"%PDF") or name.lower().endswith(".pdf"):
        try:
            text = pdf_text(data)
        except Unreadable as exc:
            raise Unreadable(f"{name} is {exc}") from None
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise Unreadable(f"{name} is not text (UTF-8), Markdown or PDF") from None
        if "\x00" in text:
            raise Unreadable(f"{name} is not text (UTF-8), Markdown or PDF")
    if not text.strip():
        raise Unreadable(f"{name} holds no text")
    return text


def pdf_text(data: bytes) -> str:
    """The text of a PDF's pages. Raises Unreadable, saying what the file is instead (for
    "<file> is …"): not a readable PDF, or one without text."""
    from pypdf import PdfReader  # only reading a PDF pays for the import

    # pypdf logs each oddity it works around; whether the text came out is what counts here.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            reader.decrypt("")
        pages = [page.extract_text() or "" for page in reader.pages]
    except Exception as exc:  # a parser fed untrusted bytes fails in many ways; all mean this
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise Unreadable(f"not a readable PDF: {reason}") from None
    text = "\n\n".join(page.strip() for page in pages if page.strip())
    if not text:
        raise Unreadable("a PDF without text (a scan?): nothing to read")
    return text


def passages(text: str) -> list[tuple[str, int]]:
    """`text` in overlapping passages of a few hundred tokens, each with its token count."""
    pieces = PIECES.findall(text)
    step = PASSAGE_WORDS - OVERLAP_WORDS
    cut = [
        "".join(pieces[start : start + PASSAGE_WORDS]).strip()
        for start in range(0, max(len(pieces) - OVERLAP_WORDS, 1), step)
    ]
    return [(passage, COUNTER.text(passage)) for passage in cut if passage]


def query_words(question: str) -> list[str]:
    """The words worth searching for: no stopwords, no repeats, no syntax."""
    found: dict[str, None] = {}
    for word in WORDS.findall(question.lower()):
        if len(word) > 1 and word not in STOPWORDS:
            found.setdefault(word)
    return list(found)[:MAX_QUERY_WORDS]


def stem(word: str) -> str:
    """A crude stem, enough to tell whether a passage holds a question's word."""
    for suffix in SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def coverage(words: list[str]) -> Callable[[Passage], int]:
    """How many of the question's words a passage holds (a word counts when a passage's
    word starts with its stem): one scan of each passage."""
    stems = sorted({stem(word) for word in words}, key=len, reverse=True)
    if not stems:
        return lambda passage: 0
    held = re.compile(r"\b(" + "|".join(map(re.escape, stems)) + ")", re.IGNORECASE)
    return lambda passage: len({found.lower() for found in held.findall(passage.content)})


def fenced(name: str, text: str, part: int | None = None) -> str:
    """One material or passage between tags the model can tell apart from the rest."""
    where = f' part="{part + 1}"' if part is not None else ""
    safe_name = name.replace('"', "'")
    body = text.replace("</material>", "</ material>")  # a file cannot close the tag early
    return f'<material name="{safe_name}"{where}>\n{body}\n</material>'


@dataclass
class Reference:
    """Finds, for one question, what of its assistant's materials goes into the system
    message: all of them when they fit `budget` tokens, else the passages that match the
    question best, as many as fit."""

    store: Store
    budget: int = DEFAULT_TOKENS

    async def for_question(self, assistant_id: str, question: str, room: int | None = None) -> str:
        """The reference block for the system message, within `room` tokens too when given;
        empty when there is nothing to add."""
        budget = self.budget if room is None else min(self.budget, room)
        return await self._within(assistant_id, question, budget)

    async def _within(self, assistant_id: str, question: str, budget: int) -> str:
        room = budget - HEADER_TOKENS
        if room <= WRAPPER_TOKENS:
            return ""
        total = await self.store.material_tokens(assistant_id)
        if not total:
            return ""
        if total + WRAPPER_TOKENS <= room:
            whole = await self.store.whole_materials(assistant_id)
            if total + WRAPPER_TOKENS * len(whole) <= room:
                return block([fenced(name, text) for name, text in whole])
        found = await self.passages(assistant_id, question)
        return block([fenced(p.name, p.content, p.seq) for p in within(found, room)])

    async def passages(self, assistant_id: str, question: str) -> list[Passage]:
        """The passages that answer `question` best, best first: the database ranks them by
        its term weights, which let a rare word repeated in a passage outrank several of the
        question's words together; so those holding more of its words come first."""
        words = query_words(question)
        found = await self.store.search_passages(assistant_id, words, CANDIDATES)
        held = coverage(words)
        return sorted(found, key=lambda passage: -held(passage))  # stable: ties keep rank


def within(found: list[Passage], room: int) -> list[Passage]:
    """The best passages whose tokens (with their tags) fit `room` together."""
    chosen: list[Passage] = []
    for passage in found:
        cost = passage.tokens + WRAPPER_TOKENS
        if cost <= room:
            chosen.append(passage)
            room -= cost
    return chosen


def block(parts: list[str]) -> str:
    return "\n\n".join([HEADER, *parts]) if parts else ""
