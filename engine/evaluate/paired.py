"""Paired differences between methods with bootstrap confidence intervals.

Two methods answered the same questions, so the question to ask of a table is whether one beats
the other on the same questions, by more than chance would. Differences are per question (F1 and
EM of method minus those of the reference method) and resampled by question group: NQ-Swap asks
each of its questions with several substituted answers, and four answers to one question are not
four independent pieces of evidence. A 95% interval that holds 0 means the 200 questions do not
tell the two methods apart.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.qa import QAItem

RESAMPLES = 2000
LEVEL = 0.95


@dataclass(frozen=True)
class PairedDelta:
    """One method against the reference method, over the questions both answered."""

    method: str
    label: str
    against: str
    n: int
    """Questions both methods answered."""
    groups: int
    """Independent units the bootstrap resampled (question groups, else questions)."""
    f1: float
    f1_low: float
    f1_high: float
    em: float
    em_low: float
    em_high: float
    wins: int
    """Questions where this method's F1 is higher than the reference's."""
    ties: int
    losses: int

    @property
    def clear(self) -> bool:
        """The F1 interval leaves out zero: the questions do tell the two apart."""
        return self.f1_low > 0 or self.f1_high < 0

    def to_json(self) -> dict[str, Any]:
        return {
            "against": self.against, "n": self.n, "groups": self.groups,
            "f1_delta": round(self.f1, 4), "f1_ci": [round(self.f1_low, 4), round(self.f1_high, 4)],
            "em_delta": round(self.em, 4), "em_ci": [round(self.em_low, 4), round(self.em_high, 4)],
            "wins": self.wins, "ties": self.ties, "losses": self.losses,
        }


def question_groups(items: Sequence[QAItem]) -> dict[str, str]:
    """Question id -> the unit that resamples as one: `meta.question_group` where the data has it, else the id."""
    return {item.id: f"group:{item.meta['question_group']}" if "question_group" in item.meta else item.id for item in items}


def paired_delta(method: str, label: str, against: str, mine: Mapping[str, tuple[float, float]],
                 theirs: Mapping[str, tuple[float, float]], groups: Mapping[str, str],
                 resamples: int = RESAMPLES, level: float = LEVEL, seed: int = 0) -> PairedDelta | None:
    """Mean (EM, F1) difference `mine - theirs` per question, with a percentile interval from a
    bootstrap over groups; None when the two share no question."""
    shared = [qid for qid in mine if qid in theirs]
    if not shared:
        return None
    sums: dict[str, list[float]] = {}
    wins = ties = losses = 0
    for qid in shared:
        d_em, d_f1 = mine[qid][0] - theirs[qid][0], mine[qid][1] - theirs[qid][1]
        row = sums.setdefault(groups.get(qid, qid), [0.0, 0.0, 0.0])
        row[0] += d_em
        row[1] += d_f1
        row[2] += 1
        wins += d_f1 > 0
        losses += d_f1 < 0
        ties += d_f1 == 0
    units = list(sums.values())
    rng = random.Random(seed)
    em_means, f1_means = [], []
    for _ in range(resamples):
        picked = [units[rng.randrange(len(units))] for _ in units]
        count = sum(u[2] for u in picked)
        em_means.append(sum(u[0] for u in picked) / count)
        f1_means.append(sum(u[1] for u in picked) / count)
    n = len(shared)
    em_low, em_high = _interval(em_means, level)
    f1_low, f1_high = _interval(f1_means, level)
    return PairedDelta(method, label, against, n, len(units),
                       sum(u[1] for u in units) / n, f1_low, f1_high,
                       sum(u[0] for u in units) / n, em_low, em_high, wins, ties, losses)


def _interval(values: list[float], level: float) -> tuple[float, float]:
    ordered = sorted(values)
    tail = (1 - level) / 2
    low = ordered[int(tail * (len(ordered) - 1))]
    high = ordered[round((1 - tail) * (len(ordered) - 1))]
    return low, high


def paired_table(deltas: Sequence[PairedDelta], against_label: str) -> tuple[str, list[str], list[list[str]]]:
    """A title, headers and formatted rows, for any renderer (rich in the CLI, markdown for a README)."""
    title = ""
    if deltas:
        first = deltas[0]
        unit = "question groups" if first.groups < first.n else "questions"
        title = (f"Paired against {against_label}: {first.n} questions, {int(LEVEL * 100)}% bootstrap intervals over "
                 f"{first.groups} {unit} ({RESAMPLES} resamples)")
    headers = ["Method", f"F1 - {against_label}", "interval", f"EM - {against_label}", "interval", "F1 wins / ties / losses",
               "Told apart"]
    rows = [[d.label, f"{d.f1:+.3f}", f"[{d.f1_low:+.3f}, {d.f1_high:+.3f}]", f"{d.em:+.3f}",
             f"[{d.em_low:+.3f}, {d.em_high:+.3f}]", f"{d.wins} / {d.ties} / {d.losses}",
             ("higher" if d.f1_low > 0 else "lower") if d.clear else "no"] for d in deltas]
    return title, headers, rows
