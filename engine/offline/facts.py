"""Fact QA pairs: every salient span of every sentence, asked two ways, for a LoRA that stores facts.

The reference recipe's three cloze pairs cover a third of a short passage; a question on any
other fact finds nothing in the LoRA. Here each sentence (pronouns at its start read as the
passage's title) gives one pair per span (names, numbers, what follows "called"/"named",
and the end of every clause), and each pair is asked as a fill-the-blank sentence and as an
in-place "what" question, so the LoRA ties the fact to the words around it rather than to
one template. No LLM, no gold answers: the test question never leaks into the LoRA.
"""

from __future__ import annotations

import re
import threading

from engine.corpus import Passage
from engine.offline.cloze import _SALIENT, _TRAILING, sentences
from engine.offline.records import AugmentFn, AugmentRecord, FailedPassage, QAPair
from engine.offline.sources import light_rewrite

_PRONOUN = re.compile(r"^(It|He|She|They|This|Its|His|Her|Their)\b")
_NAMED = re.compile(r"\b(?:called|named|known as|nicknamed)\s+((?:the\s+)?[\w'’-]+(?:\s+[A-Z][\w'’-]*)*)")
_CLAUSE = re.compile(r"[,;:]\s+|\s+(?:and|but|which|where|while|whose)\s+")
_FUNCTION_WORDS = {"of", "the", "a", "an", "in", "on", "at", "by", "for", "from", "with", "to", "into", "and", "or", "as",
                   "is", "was", "are", "were", "be", "been", "call", "called", "named", "its", "his", "her", "their"}
MAX_SPAN_WORDS = 6
CLAUSE_END_WORDS = 2


def resolve_opening(sentence: str, title: str) -> str:
    """"It was founded ..." -> "Velmora was founded ...": the fact keeps its subject once cut from the passage."""
    if not title:
        return sentence
    match = _PRONOUN.match(sentence)
    if match is None:
        return sentence
    word = match.group(1)
    subject = f"{title}'s" if word in ("Its", "His", "Her", "Their") else title
    return subject + sentence[match.end():]


def spans(sentence: str, title: str) -> list[tuple[int, int]]:
    """Character spans worth asking for, in sentence order, without the title itself or repeats."""
    body = _TRAILING.sub("", sentence)
    found: list[tuple[int, int]] = []
    for match in _SALIENT.finditer(body):
        if match.start() == 0 and not match.group(0)[:1].isdigit():
            continue  # the sentence's subject: usually the title or a capitalised opener
        found.append((match.start(), match.end()))
    for match in _NAMED.finditer(body):
        found.append((match.start(1), match.end(1)))
    for clause in _clause_ends(body):
        found.append(clause)
    seen: set[str] = set()
    kept = []
    for start, end in sorted(found):
        text = body[start:end].strip()
        key = text.lower()
        if not text or key in seen or (title and key in title.lower()) or len(text.split()) > MAX_SPAN_WORDS:
            continue
        seen.add(key)
        kept.append((start, end))
    return kept


def _clause_ends(body: str) -> list[tuple[int, int]]:
    """The last words of each clause: where "is painted saffron yellow" keeps its point."""
    ends = []
    start = 0
    for match in list(_CLAUSE.finditer(body)) + [None]:
        stop = match.start() if match is not None else len(body)
        words = list(re.finditer(r"\S+", body[start:stop]))
        if len(words) >= 3:
            tail = words[max(0, len(words) - CLAUSE_END_WORDS):]
            while tail and tail[0].group(0).lower() in _FUNCTION_WORDS:
                tail = tail[1:]
            if tail:
                ends.append((start + tail[0].start(), start + tail[-1].end()))
        if match is not None:
            start = match.end()
    return ends


def fact_pairs(passage: Passage) -> list[QAPair]:
    """Two pairs (cloze and "what" question) per span of every sentence."""
    pairs: list[QAPair] = []
    for raw in sentences(passage.text):
        sentence = resolve_opening(raw, passage.title)
        body = _TRAILING.sub("", sentence)
        for start, end in spans(sentence, passage.title):
            answer = body[start:end].strip()
            before, after = body[:start].rstrip(), body[end:].strip()
            if after and after[0] not in ",;:":
                after = " " + after
            about = f"About {passage.title}: " if passage.title and passage.title.lower() not in body.lower() else ""
            pairs.append(QAPair(f"{about}{before} ___{after}.".strip(), answer, sentence))
            pairs.append(QAPair(f"{about}{before} what{after}?".strip(), answer, sentence))
    return pairs


def facts_source(min_qa: int = 2) -> AugmentFn:
    """Fact pairs and the light rewrite; a passage with fewer than `min_qa` pairs fails."""

    def run(passage: Passage, cancel: threading.Event | None) -> AugmentRecord | FailedPassage:
        pairs = fact_pairs(passage)
        if len(pairs) < min_qa:
            return FailedPassage(passage, f"{len(pairs)} fact question(s) in this passage (need {min_qa})")
        return AugmentRecord(passage, light_rewrite(passage.text), pairs)

    return run
