"""Scores shown beside answers: EM/F1 against the gold answers, and which side of a
knowledge conflict an answer follows.

The definitions belong to `engine.metrics` (SQuAD-style normalisation, max over gold
aliases). While that module does not exist yet, `_normalize` below is a minimal
private stand-in so the explorer works; it is not part of the engine's API.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Sequence

if TYPE_CHECKING:
    from engine.qa import Conflict

try:  # engine.metrics is written in another issue; prefer it as soon as it exists
    from engine.metrics import normalize_answer as _normalize  # type: ignore[import-not-found]
except ImportError:
    _ARTICLES = re.compile(r"\b(a|an|the)\b")
    _PUNCT = str.maketrans("", "", string.punctuation)

    def _normalize(text: str) -> str:
        """Lower case, drop punctuation and articles, collapse spaces (SQuAD's rule)."""
        return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCT)).split())


Follows = Literal["passage", "memory", "both", "neither"]
"""Which gold set a conflict answer contains: substituted (passage), original (memory)."""


@dataclass(frozen=True)
class Score:
    em: float
    f1: float


def _f1(prediction: str, gold: str) -> float:
    pred, ref = _normalize(prediction).split(), _normalize(gold).split()
    common = sum((Counter(pred) & Counter(ref)).values())
    if not pred or not ref or common == 0:
        return float(pred == ref)
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def score(prediction: str, golds: Sequence[str]) -> Score:
    """Exact match and token F1, each the max over the gold aliases."""
    if not golds:
        return Score(0.0, 0.0)
    norm = _normalize(prediction)
    return Score(
        em=max(float(norm == _normalize(g)) for g in golds),
        f1=max(_f1(prediction, g) for g in golds),
    )


def contains_any(prediction: str, golds: Sequence[str]) -> bool:
    """True when some normalized gold alias occurs in the normalized answer (word-aligned)."""
    padded = f" {_normalize(prediction)} "
    return any(n and f" {n} " in padded for n in (_normalize(g) for g in golds))


def follows(prediction: str, conflict: "Conflict") -> Follows:
    """Which side of a knowledge conflict the answer went with."""
    passage = contains_any(prediction, conflict.substituted_answers)
    memory = contains_any(prediction, conflict.original_answers)
    if passage and memory:
        return "both"
    return "passage" if passage else "memory" if memory else "neither"
