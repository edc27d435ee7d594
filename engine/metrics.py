"""Answer scores in the SQuAD style, each the best over the gold aliases.

Why these rules: the PRAG and DyPRAG papers report EM and F1 after SQuAD-style
normalization (lower-case, drop punctuation and the articles a/an/the, collapse
whitespace) and take the maximum over all accepted answers, so our table is
comparable with theirs. Two deliberate choices on top:

- Punctuation is any Unicode punctuation character, not only ASCII, so a curly
  quote or an en dash in a model's answer does not cost a token.
- An answer that normalizes to nothing never scores: an empty prediction (an
  error, a blank generation) is wrong against every gold, and a gold alias that
  normalizes to nothing (e.g. "The") can match nothing.

Precision, recall and F1 are each maximized over the aliases on their own, as
the reference evaluation does; so the three may come from different aliases.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_ASCII_PUNCT = frozenset(string.punctuation)


def _is_punct(char: str) -> bool:
    return char in _ASCII_PUNCT or unicodedata.category(char).startswith("P")


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation, drop a/an/the, collapse whitespace."""
    text = "".join(c for c in text.lower() if not _is_punct(c))
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _golds(answers: str | Iterable[str]) -> list[str]:
    """One alias or several -> their normalized forms, empty ones dropped."""
    if isinstance(answers, str):
        answers = [answers]
    return [g for g in (normalize_answer(a) for a in answers) if g]


def exact_match(prediction: str, answers: str | Iterable[str]) -> float:
    """1.0 when the normalized prediction equals any normalized gold alias, else 0.0."""
    pred = normalize_answer(prediction)
    return float(bool(pred) and pred in _golds(answers))


@dataclass(frozen=True)
class Overlap:
    """Token-overlap scores of one prediction against its best gold aliases."""

    precision: float = 0.0
    """Share of the prediction's tokens found in the gold."""
    recall: float = 0.0
    """Share of the gold's tokens found in the prediction."""
    f1: float = 0.0
    """Harmonic mean of the two (per alias, then maximized)."""


def _overlap(pred_tokens: list[str], gold_tokens: list[str]) -> Overlap:
    same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if not same:
        return Overlap()
    precision = same / len(pred_tokens)
    recall = same / len(gold_tokens)
    return Overlap(precision, recall, 2 * precision * recall / (precision + recall))


def f1_score(prediction: str, answers: str | Iterable[str]) -> Overlap:
    """Token precision, recall and F1, each the maximum over the gold aliases."""
    pred_tokens = normalize_answer(prediction).split()
    if not pred_tokens:
        return Overlap()
    scores = [_overlap(pred_tokens, gold.split()) for gold in _golds(answers)]
    if not scores:
        return Overlap()
    return Overlap(
        precision=max(s.precision for s in scores),
        recall=max(s.recall for s in scores),
        f1=max(s.f1 for s in scores),
    )


def contains_any(prediction: str, answers: str | Iterable[str]) -> bool:
    """True when a normalized gold alias appears in the normalized prediction as whole words.

    Used for knowledge-conflict rates: "Rome, not Paris" contains both "rome" and
    "paris"; "1000 degrees" does not contain "100".
    """
    pred = f" {normalize_answer(prediction)} "
    return pred.strip() != "" and any(f" {gold} " in pred for gold in _golds(answers))
