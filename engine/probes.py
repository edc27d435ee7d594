"""Answer-likelihood probes: how far a method moves the model towards an answer, even when the
greedy answer does not flip.

Each probe is the teacher-forced log-probability a method's own prompt gives a candidate answer
(`CandidateScore`, measured in the same batched pass as the answers). For a QA item the
candidates are its gold aliases and, on knowledge-conflict sets, the original (memory) and the
substituted (context) answers. A few aliases per side are enough: the most likely one counts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.answers import Answer
    from engine.qa import QAItem

MAX_ALIASES = 3
"""Candidates per side: PopQA lists dozens of aliases, and each costs a short forward pass."""


def _first_unique(texts: Sequence[str], limit: int) -> list[str]:
    seen: dict[str, str] = {}
    for text in texts:
        clean = text.strip()
        if clean and clean.lower() not in seen:
            seen[clean.lower()] = clean
    return list(seen.values())[:limit]


@dataclass(frozen=True)
class ProbeSet:
    """The candidate answers probed for one question, by role."""

    gold: tuple[str, ...]
    original: tuple[str, ...] = ()
    """Conflict sets: what the model's memory holds."""
    substituted: tuple[str, ...] = ()
    """Conflict sets: what the passage says."""

    @classmethod
    def for_item(cls, item: QAItem, limit: int = MAX_ALIASES) -> ProbeSet:
        if item.conflict is None:
            return cls(tuple(_first_unique(item.answers, limit)))
        return cls(tuple(_first_unique(item.answers, limit)), tuple(_first_unique(item.conflict.original_answers, limit)),
                   tuple(_first_unique(item.conflict.substituted_answers, limit)))

    def candidates(self) -> tuple[str, ...]:
        """Every text to score, once each, in a stable order."""
        return tuple(dict.fromkeys((*self.gold, *self.original, *self.substituted)))

    def measure(self, answer: Answer) -> dict[str, float]:
        """{"gold", "original"?, "substituted"?}: the best log-prob of each side's aliases."""
        out: dict[str, float] = {}
        for role, texts in (("gold", self.gold), ("original", self.original), ("substituted", self.substituted)):
            values = [v for v in (answer.score_of(t) for t in texts) if v is not None]
            if values:
                out[role] = max(values)
        return out


def memorization_ratio(original: float, substituted: float) -> float:
    """MR = p_orig / (p_orig + p_sub), from log-probs without under- or overflow."""
    return 1.0 / (1.0 + math.exp(max(-700.0, min(700.0, substituted - original))))


@dataclass
class ProbeSummary:
    """Means over the questions a method has probes for (None where there were none)."""

    gold_logprob: float | None = None
    gold_gain: float | None = None
    """Mean of (this method's gold log-prob - vanilla's) over questions both have."""
    gold_up: float | None = None
    """Share of those questions where the gold answer is more likely than under vanilla."""
    context_over_memory: float | None = None
    """Conflict sets: share where the substituted answer is more likely than the original one."""
    memorization: float | None = None
    """Conflict sets: mean MR = p_orig / (p_orig + p_sub)."""

    def to_json(self) -> dict[str, Any]:
        return {k: None if v is None else round(v, 4) for k, v in self.__dict__.items()}


def summarize_probes(probes: Sequence[dict[str, float]], vanilla: Sequence[dict[str, float] | None] = ()) -> ProbeSummary:
    """`probes[i]` is one question's `ProbeSet.measure`; `vanilla[i]` the same question under vanilla (or None)."""
    summary = ProbeSummary()
    gold = [p["gold"] for p in probes if "gold" in p]
    if gold:
        summary.gold_logprob = sum(gold) / len(gold)
    gains = [p["gold"] - v["gold"] for p, v in zip(probes, vanilla, strict=False) if v is not None and "gold" in p and "gold" in v]
    if gains:
        summary.gold_gain = sum(gains) / len(gains)
        summary.gold_up = sum(g > 0 for g in gains) / len(gains)
    pairs = [(p["original"], p["substituted"]) for p in probes if "original" in p and "substituted" in p]
    if pairs:
        summary.context_over_memory = sum(s > o for o, s in pairs) / len(pairs)
        summary.memorization = sum(memorization_ratio(o, s) for o, s in pairs) / len(pairs)
    return summary
