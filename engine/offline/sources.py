"""QA pairs without an LLM, and the passages to augment.

- the passages: a corpus, or the distinct passages of a QA file, optionally a seeded
  sample spread over every article;
- gold QA pairs from a QA JSONL file whose passages carry several questions each
  (SQuAD-style), grouped by passage text: fast and exact;
- the light rewrite: a deterministic word swap that keeps names, numbers and terms, for
  sources with no LLM rewrite and for LLM rewrites that lost a name.
"""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from engine.corpus import Passage, load_corpus
from engine.errors import InputError
from engine.offline.records import MIN_QA, AugmentFn, AugmentRecord, FailedPassage, QAPair

if TYPE_CHECKING:
    from engine.offline.augment import LLMAugmenter
    from engine.qa import QAItem

_SPACES = re.compile(r"\s+")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def norm_words(text: str) -> str:
    """Lower-case words joined by single spaces: how answers are matched against passages."""
    return " ".join(_WORD.findall(text.lower()))


def sentence_with(passage: str, answer: str) -> str | None:
    """The passage sentence that contains `answer` (a natural full answer), if any."""
    target = norm_words(answer)
    for sentence in re.split(r"(?<=[.!?])\s+", passage.strip()):
        if target and target in norm_words(sentence):
            return sentence.strip()
    return None


# --- passages and gold QA pairs ------------------------------------------------------------------------------------


def passages_from(corpus: Path | None = None, data: Path | None = None, questions: int | None = None,
                  skip_questions: int = 0) -> list[Passage]:
    """Passages of a corpus, or the distinct passages of a QA file (of its first `questions` rows), in file order.

    `skip_questions` leaves out every passage of the file's first rows, so training data never holds a passage
    that `prag eval --limit N` tests on, even where a later question shares it.
    """
    if corpus is not None:
        return load_corpus(corpus)
    if data is None:
        raise InputError("no passages to augment", "pass --corpus PATH or --data QA.jsonl")
    from engine.qa import load_qa

    items = load_qa(data, None if questions is None else skip_questions + questions)
    held_out = {passage.key for item in items[:skip_questions] for passage in item.passages}
    chosen = items[skip_questions:]
    chosen = chosen[:questions] if questions is not None else chosen
    seen: dict[str, Passage] = {}
    for item in chosen:
        for passage in item.passages:
            if passage.key not in held_out:
                seen.setdefault(passage.key, passage)
    if not seen:
        raise InputError(f"{data} has no passages", "its lines need \"passages\": [{\"title\", \"text\"}]")
    return list(seen.values())


def sample_passages(passages: Sequence[Passage], count: int, seed: int = 0) -> list[Passage]:
    """A seeded random `count` of them in their original order: a spread over every article, not the first few."""
    chosen = sorted(random.Random(seed).sample(range(len(passages)), min(count, len(passages))))
    return [passages[i] for i in chosen]


def gold_qa_index(items: Sequence[QAItem]) -> dict[str, list[QAItem]]:
    """Questions grouped by the text of their passage (whitespace-normalized, title ignored)."""
    index: dict[str, list[QAItem]] = {}
    for item in items:
        for passage in item.passages:
            index.setdefault(_SPACES.sub(" ", passage.text.strip()), []).append(item)
    return index


def gold_pairs(passage: Passage, questions: Sequence[QAItem]) -> list[QAPair]:
    """Gold QA pairs in file order: the first answer is the span; its passage sentence the full answer."""
    pairs, seen = [], set()
    for item in questions:
        if item.question in seen:
            continue
        seen.add(item.question)
        answer = item.answers[0].strip()
        pairs.append(QAPair(item.question, answer, sentence_with(passage.text, answer) or f"The answer is {answer}."))
    return pairs


def gold_source(index: dict[str, list[QAItem]], min_qa: int = MIN_QA, max_qa: int = MIN_QA,
                augmenter: LLMAugmenter | None = None) -> AugmentFn:
    """QA pairs from the data; the rewrite from `augmenter` when given, else the light rewrite."""

    def run(passage: Passage, cancel: threading.Event | None) -> AugmentRecord | FailedPassage:
        questions = index.get(_SPACES.sub(" ", passage.text.strip()), [])
        pairs = gold_pairs(passage, questions)
        if len(pairs) < min_qa:
            return FailedPassage(passage, f"the data has {len(pairs)} question(s) for this passage (need {min_qa})")
        text = augmenter.rewrite(passage, cancel) if augmenter is not None else light_rewrite(passage.text)
        return AugmentRecord(passage, text, pairs[:max_qa])

    return run


# A light, deterministic rewrite: common words swapped for near-synonyms in one pass.
# Only lower-case occurrences change, so names ("Large Hadron Collider"), numbers and
# terms stay exactly as written.
_SYNONYMS = {
    "about": "around", "approximately": "about", "roughly": "about", "nearly": "almost", "almost": "nearly",
    "large": "big", "big": "large", "largest": "biggest", "biggest": "largest", "small": "little",
    "huge": "enormous", "tiny": "very small", "many": "numerous", "numerous": "many", "several": "a number of",
    "various": "assorted", "often": "frequently", "frequently": "often", "usually": "normally",
    "sometimes": "at times", "quickly": "rapidly", "rapidly": "quickly", "slowly": "gradually",
    "famous": "well-known", "well-known": "famous", "important": "significant", "significant": "important",
    "major": "key", "main": "principal", "principal": "main", "primary": "chief", "chief": "primary",
    "however": "but", "because": "since", "although": "even though", "though": "although",
    "during": "in the course of", "near": "close to", "around": "about", "between": "among",
    "began": "started", "begin": "start", "begins": "starts", "started": "began", "start": "begin",
    "finished": "completed", "completed": "finished", "ended": "finished", "built": "constructed",
    "constructed": "built", "created": "made", "made": "created", "founded": "established",
    "established": "founded", "helped": "assisted", "help": "assist", "shows": "depicts", "showed": "displayed",
    "received": "got", "gave": "handed", "give": "provide", "gives": "provides", "provides": "gives",
    "provided": "supplied", "used": "employed", "uses": "employs", "use": "employ",
    "located": "situated", "situated": "located", "lies": "sits", "sits": "lies", "lived": "resided",
    "lives": "dwells", "live": "dwell", "moved": "relocated", "died": "passed away", "won": "claimed",
    "defeated": "beat", "beat": "defeated", "earn": "gain", "earned": "gained", "emphasized": "stressed",
    "temporarily": "for a time", "tradition": "custom", "prominently": "clearly", "feature": "display",
    "featured": "included", "includes": "contains", "include": "contain", "included": "contained",
    "contains": "holds", "holds": "contains", "held": "staged", "determine": "decide", "decided": "chose",
    "chose": "picked", "known as": "called", "called": "named", "named after": "named for",
    "the first": "the earliest", "first": "initial", "last": "final", "final": "last", "later": "subsequently",
    "afterwards": "later", "then": "next", "also": "as well", "still": "yet", "today": "nowadays",
    "ancient": "very old", "modern": "present-day", "old": "aged", "new": "recent", "recent": "new",
    "whole": "entire", "entire": "whole", "each": "every", "every": "each", "city": "town",
    "country": "nation", "nation": "country", "people": "persons", "children": "kids", "area": "region",
    "region": "area", "part": "portion", "piece": "bit", "type": "kind", "kind": "type", "form": "shape",
    "role": "part", "work": "labour", "job": "post", "team": "side", "game": "match", "match": "game",
    "building": "structure", "structure": "building", "company": "firm", "firm": "company",
    "says": "states", "said": "stated", "claim": "assert", "claimed": "asserted", "believe": "think",
    "believed": "thought", "thought": "believed", "known": "recognised", "seen": "regarded",
    "became": "grew into", "become": "turn into", "remains": "stays", "remained": "stayed", "keep": "retain",
    "kept": "retained", "reach": "attain", "reached": "attained", "reaches": "attains", "allow": "permit",
    "allowed": "permitted", "allows": "permits", "need": "require", "needed": "required", "needs": "requires",
    "wrote": "penned", "written": "penned", "painted": "coloured", "covered": "coated", "joined": "met",
    "join": "meet", "crosses": "spans", "crossed": "spanned", "carry": "convey", "carried": "conveyed",
    "produce": "generate", "produced": "generated", "produces": "generates", "increase": "rise",
    "increased": "rose", "decrease": "drop", "decreased": "dropped", "important to": "vital to",
}
_SYN_PATTERN = re.compile(r"(?<![\w-])(" + "|".join(sorted(map(re.escape, _SYNONYMS), key=len, reverse=True)) + r")(?![\w-])")


def light_rewrite(text: str) -> str:
    """Lower-case word swaps in one pass (no chains); capitalized names, numbers and terms untouched."""
    return _SYN_PATTERN.sub(lambda match: _SYNONYMS[match.group(0)], text)
