"""Scores shown beside answers: EM/F1 against the gold answers (engine.metrics), which side
of a knowledge conflict an answer follows (normalized containment), and the probes: how much
more likely a method makes the gold answer than vanilla, and each conflict side's log-prob."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from engine.metrics import contains_any, exact_match, f1_score
from engine.probes import ProbeSet, memorization_ratio

if TYPE_CHECKING:
    from engine.answers import Answer
    from engine.qa import Conflict, QAItem

Follows = Literal["passage", "memory", "both", "neither"]
"""Which gold set a conflict answer contains: substituted (passage) or original (memory)."""


@dataclass(frozen=True)
class Score:
    em: float
    f1: float


def score(prediction: str, golds: Sequence[str]) -> Score:
    """Exact match and token F1, each the best over the gold aliases."""
    return Score(em=exact_match(prediction, golds), f1=f1_score(prediction, golds).f1)


def follows(prediction: str, conflict: Conflict) -> Follows:
    """Which side of a knowledge conflict the answer went with."""
    passage = contains_any(prediction, conflict.substituted_answers)
    memory = contains_any(prediction, conflict.original_answers)
    if passage and memory:
        return "both"
    return "passage" if passage else "memory" if memory else "neither"


def gold_gains(answers: Sequence[Answer], item: QAItem) -> dict[str, float]:
    """Per method: log p(gold) under its prompt minus under vanilla's (the probes; empty without vanilla's)."""
    probes = ProbeSet.for_item(item)
    measured = {answer.method: probes.measure(answer).get("gold") for answer in answers if not answer.error}
    base = measured.get("vanilla")
    if base is None:
        return {}
    return {method: value - base for method, value in measured.items() if value is not None}


def probe_sides(answer: Answer, item: QAItem) -> dict[str, float]:
    """{"original", "substituted", "mr"?}: a conflict answer's log-probs of both sides and MR = p_orig / (p_orig + p_sub)."""
    out = ProbeSet.for_item(item).measure(answer)
    if "original" in out and "substituted" in out:
        out["mr"] = memorization_ratio(out["original"], out["substituted"])
    return out
