"""Scores shown beside answers: EM/F1 against the gold answers (engine.metrics), and
which side of a knowledge conflict an answer follows (normalized containment)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Sequence

from engine.metrics import contains_any, exact_match, f1_score

if TYPE_CHECKING:
    from engine.qa import Conflict

Follows = Literal["passage", "memory", "both", "neither"]
"""Which gold set a conflict answer contains: substituted (passage) or original (memory)."""


@dataclass(frozen=True)
class Score:
    em: float
    f1: float


def score(prediction: str, golds: Sequence[str]) -> Score:
    """Exact match and token F1, each the best over the gold aliases."""
    return Score(em=exact_match(prediction, golds), f1=f1_score(prediction, golds).f1)


def follows(prediction: str, conflict: "Conflict") -> Follows:
    """Which side of a knowledge conflict the answer went with."""
    passage = contains_any(prediction, conflict.substituted_answers)
    memory = contains_any(prediction, conflict.original_answers)
    if passage and memory:
        return "both"
    return "passage" if passage else "memory" if memory else "neither"
