"""Cloze QA pairs made from a passage's own sentences: no LLM, no gold answers.

The PRAG recipe wants a few QA pairs per passage. A 135M model writes them slowly and
often not at all (minutes per passage, most attempts invalid), and gold pairs would leak
the test question into the LoRA. A cloze pair blanks one salient span (a name, a number,
else the sentence's last words) of a passage sentence and asks for it: the LoRA still
learns the passage's facts, and augmenting thousands of passages takes a second.
"""

from __future__ import annotations

import re
import threading

from engine.corpus import Passage
from engine.offline.records import AugmentFn, AugmentRecord, FailedPassage, QAPair
from engine.offline.sources import light_rewrite

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
# A run of capitalized words (with inner "of", "de", ...), or a number with its unit words.
_SALIENT = re.compile(
    r"\b(?:[A-Z][\w'’.-]*(?:\s+(?:of|de|la|von|van|the|and)?\s*[A-Z][\w'’.-]*)*|\d[\d,.]*(?:\s+(?:BC|AD|percent|million|billion))?)"
)
_TRAILING = re.compile(r"[\s,;:.!?)\"']+$")
MIN_WORDS = 5
_OPENERS = {"the", "a", "an", "he", "she", "it", "they", "his", "her", "its", "their", "this", "that", "these", "those",
            "in", "on", "at", "by", "for", "from", "with", "as", "after", "before", "during", "since", "when", "while",
            "there", "however", "although", "but", "and", "or", "of", "to"}


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if len(s.split()) >= MIN_WORDS]


def name_span(sentence: str) -> tuple[int, int] | None:
    """The last name or number in the sentence (one that opens it only when there is no other)."""
    body = _TRAILING.sub("", sentence)
    spans = []
    for match in _SALIENT.finditer(body):
        words = match.group(0).split()
        while words and words[0].lower() in _OPENERS:  # "The Senate" -> "Senate"; "He" -> nothing
            words = words[1:]
        if words and len(" ".join(words)) > 1:
            text = " ".join(words)
            spans.append((match.end() - len(text), match.end()))
    later = [span for span in spans if span[0] > 0]
    return (later or spans or [None])[-1]


def end_span(sentence: str, words: int = 3) -> tuple[int, int]:
    """The sentence's last few words: where "X was an American politician" keeps its point."""
    found = list(re.finditer(r"\S+", _TRAILING.sub("", sentence)))
    return found[max(0, len(found) - words)].start(), found[-1].end()


def cloze_pairs(passage: Passage, max_qa: int = 3) -> list[QAPair]:
    """Up to `max_qa` pairs: the end, then the last name, of each sentence in turn (spread over a long passage)."""
    chosen = sentences(passage.text)
    if len(chosen) > max_qa:  # first, last and evenly between: the whole passage, not its opening
        step = (len(chosen) - 1) / (max_qa - 1) if max_qa > 1 else 0
        chosen = [chosen[round(i * step)] for i in range(max_qa)]
    about = f" about {passage.title}" if passage.title else ""
    pairs: list[QAPair] = []
    seen: set[str] = set()
    for sentence in chosen:
        for span in (end_span(sentence), name_span(sentence)):
            if span is None or len(pairs) == max_qa:
                continue
            start, end = span
            answer = sentence[start:end].strip()
            if not answer or answer.lower() in seen:
                continue
            seen.add(answer.lower())
            blanked = f"{sentence[:start]}___{sentence[end:]}"
            pairs.append(QAPair(f"In the passage{about}, what fills the blank? {blanked}", answer, sentence))
    return pairs


def cloze_source(min_qa: int = 3, max_qa: int = 3) -> AugmentFn:
    """`prag augment --qa-cloze`: cloze pairs and the light rewrite; a passage too short for `min_qa` fails."""

    def run(passage: Passage, cancel: threading.Event | None) -> AugmentRecord | FailedPassage:
        pairs = cloze_pairs(passage, max_qa)
        if len(pairs) < min_qa:
            return FailedPassage(passage, f"{len(pairs)} cloze question(s) in this passage (need {min_qa})")
        return AugmentRecord(passage, light_rewrite(passage.text), pairs)

    return run
