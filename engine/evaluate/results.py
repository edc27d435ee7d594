"""The results table: per-method means of the stored predictions, recomputed from the files every time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import InputError
from engine.evaluate.options import REFERENCE_MAX_NEW_TOKENS, REFERENCE_TOP_K
from engine.evaluate.paired import PairedDelta, paired_delta
from engine.methods import Method
from engine.metrics import contains_any, exact_match, f1_score
from engine.probes import ProbeSummary, summarize_probes
from engine.qa import QAItem


@dataclass
class MethodScores:
    """One row of the results table; means over the evaluated questions."""

    method: str
    label: str
    n: int = 0
    """Questions with a stored prediction for this method."""
    em: float = 0.0
    f1: float = 0.0
    precision: float = 0.0
    recall: float = 0.0
    latency_s: float | None = None
    """Mean seconds per answer, over answers without an error; None when all failed."""
    tokens: float | None = None
    """Mean new tokens per answer, over answers without an error."""
    errors: int = 0
    """Answers that failed; each scores as an empty prediction (EM and F1 0)."""
    first_error: str | None = None
    """The first failure's message, to tell the user what to do."""
    conflict_n: int = 0
    """Questions with a `conflict` field among the evaluated ones."""
    context_rate: float | None = None
    """Share of conflict answers containing the passage's (substituted) answer."""
    memory_rate: float | None = None
    """Share of conflict answers containing the original (memory) answer."""
    passages: float | None = None
    """Mean number of passages the method was given (varies under dynamic reranking)."""
    probes: ProbeSummary | None = None
    """Answer-likelihood probes: gold log-prob, its gain over vanilla, and on conflict sets context-vs-memory."""
    scored: dict[str, tuple[float, float]] = field(default_factory=dict, repr=False)
    """Question id -> (EM, F1): what paired comparisons between methods are made of."""

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "em": _round(self.em), "f1": _round(self.f1), "precision": _round(self.precision), "recall": _round(self.recall),
            "latency_s": _round(self.latency_s), "tokens": _round(self.tokens), "errors": self.errors,
            "passages": _round(self.passages),
        }
        if self.conflict_n:
            row["context_rate"] = _round(self.context_rate)
            row["memory_rate"] = _round(self.memory_rate)
        if self.probes is not None:
            row["probes"] = self.probes.to_json()
        return row


@dataclass
class EvalResult:
    """The table of one evaluation run, plus where its predictions live."""

    data: Path
    n: int
    """Questions evaluated (after --limit)."""
    methods: dict[str, MethodScores]
    predictions: dict[str, Path]
    """Method name -> its predictions file."""
    model: str = ""
    top_k: int = REFERENCE_TOP_K
    max_new_tokens: int = REFERENCE_MAX_NEW_TOKENS
    computed: int = 0
    """Questions this run sent to the model (for all their methods, or only the missing ones)."""
    resumed: int = 0
    """(question, method) answers taken from the prediction files instead of asked again."""
    reused: int = 0
    """(question, method) answers copied from a record (`--reuse`) instead of asked."""
    repaired: int = 0
    """Lines dropped from the prediction files on load (torn, invalid, or failed answers to retry)."""
    wall_s: float = 0.0
    seconds_per_question: float | None = None
    """Mean wall time of one compare call (all methods of one question) in this run."""
    placement: str = ""
    """Where the answers were computed, e.g. "cpu float32" (empty: not recorded)."""
    settings: dict[str, Any] = field(default_factory=dict)
    """The fingerprint that keyed the prediction files: every setting that changed an answer."""
    groups: dict[str, str] = field(default_factory=dict)
    """Question id -> the unit a paired bootstrap resamples (`engine.evaluate.paired.question_groups`)."""

    def paired(self, against: str) -> list[PairedDelta]:
        """Every other method minus `against`, question by question, with bootstrap intervals."""
        if against not in self.methods:
            raise InputError(f"--against {against}: that method is not in this evaluation",
                             f"choose one of: {', '.join(self.methods)}")
        theirs = self.methods[against].scored
        rows = [paired_delta(name, scores.label, against, scores.scored, theirs, self.groups)
                for name, scores in self.methods.items() if name != against]
        return [row for row in rows if row is not None]

    @property
    def has_conflicts(self) -> bool:
        return any(s.conflict_n for s in self.methods.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "data": str(self.data),
            "n": self.n,
            "methods": {name: scores.to_json() for name, scores in self.methods.items()},
            "predictions": str(next(iter(self.predictions.values())).parent) if self.predictions else None,
            **({"device": self.placement.split()[0], "dtype": self.placement.split()[-1]} if self.placement else {}),
        }

    @property
    def has_probes(self) -> bool:
        return any(s.probes is not None and s.probes.gold_logprob is not None for s in self.methods.values())

    def table(self) -> tuple[list[str], list[list[str]]]:
        """Headers and formatted rows, for any renderer (rich in the CLI, a DataTable in the TUI)."""
        headers = ["Method", "EM", "F1", "Precision", "Recall", "Latency", "Tokens", "Passages", "Errors"]
        if self.has_conflicts:
            headers += ["Context", "Memory"]
        if self.has_probes:
            headers += ["Gold logp", "vs vanilla", "Gold up"]
            if self.has_conflicts:
                headers += ["Ctx>Mem", "MR"]
        rows = []
        for s in self.methods.values():
            row = [s.label, f"{s.em:.3f}", f"{s.f1:.3f}", f"{s.precision:.3f}", f"{s.recall:.3f}",
                   _fmt(s.latency_s, "{:.2f}s"), _fmt(s.tokens, "{:.1f}"), _fmt(s.passages, "{:.2f}"), str(s.errors)]
            if self.has_conflicts:
                row += [_fmt(s.context_rate), _fmt(s.memory_rate)]
            if self.has_probes:
                p = s.probes or ProbeSummary()
                row += [_fmt(p.gold_logprob, "{:.2f}"), _fmt(p.gold_gain, "{:+.2f}"), _fmt(p.gold_up)]
                if self.has_conflicts:
                    row += [_fmt(p.context_over_memory), _fmt(p.memorization)]
            rows.append(row)
        return headers, rows


def _fmt(value: float | None, pattern: str = "{:.3f}") -> str:
    return "-" if value is None else pattern.format(value)


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


# --- scoring ---------------------------------------------------------------------------


def score_record(prediction: str, error: str | None, answers: Sequence[str]) -> tuple[float, float]:
    """(EM, F1) of one stored answer; a failed answer is an empty prediction."""
    text = "" if error else prediction
    return exact_match(text, answers), f1_score(text, answers).f1


def summarize(items: Sequence[QAItem], methods: Sequence[Method], records: dict[str, dict[str, dict[str, Any]]]) -> dict[str, MethodScores]:
    """Per-method means over the items that have a record; `records[method][id]` is one prediction line."""
    table: dict[str, MethodScores] = {}
    for method in methods:
        scores = MethodScores(method.name, method.label)
        sums = {"em": 0.0, "f1": 0.0, "precision": 0.0, "recall": 0.0}
        latency: list[float] = []
        tokens: list[int] = []
        kept: list[int] = []
        context = memory = 0
        for item in items:
            record = records.get(method.name, {}).get(item.id)
            if record is None:
                continue
            scores.n += 1
            if isinstance(record.get("passages"), list):
                kept.append(len(record["passages"]))
            error = record.get("error")
            prediction = "" if error else str(record.get("prediction") or "")
            if error:
                scores.errors += 1
                scores.first_error = scores.first_error or str(error)
            else:
                latency.append(float(record.get("latency_s") or 0.0))
                tokens.append(int(record.get("tokens") or 0))
            overlap = f1_score(prediction, item.answers)
            em = exact_match(prediction, item.answers)
            scores.scored[item.id] = (em, overlap.f1)
            sums["em"] += em
            sums["f1"] += overlap.f1
            sums["precision"] += overlap.precision
            sums["recall"] += overlap.recall
            if item.conflict is not None:
                scores.conflict_n += 1
                context += contains_any(prediction, item.conflict.substituted_answers)
                memory += contains_any(prediction, item.conflict.original_answers)
        if scores.n:
            scores.em, scores.f1 = sums["em"] / scores.n, sums["f1"] / scores.n
            scores.precision, scores.recall = sums["precision"] / scores.n, sums["recall"] / scores.n
        if latency:
            scores.latency_s = sum(latency) / len(latency)
            scores.tokens = sum(tokens) / len(tokens)
        if kept:
            scores.passages = sum(kept) / len(kept)
        if scores.conflict_n:
            scores.context_rate = context / scores.conflict_n
            scores.memory_rate = memory / scores.conflict_n
        scores.probes = _probe_summary(items, records.get(method.name, {}), records.get("vanilla", {}))
        table[method.name] = scores
    return table


def _probe_summary(items: Sequence[QAItem], mine: dict[str, dict[str, Any]], vanilla: dict[str, dict[str, Any]]) -> ProbeSummary | None:
    """Probe means over the questions whose records carry probes (older prediction files may not)."""
    probed = [(mine[i.id]["probes"], (vanilla.get(i.id) or {}).get("probes")) for i in items
              if isinstance((mine.get(i.id) or {}).get("probes"), dict)]
    if not probed:
        return None
    return summarize_probes([p for p, _ in probed], [v if isinstance(v, dict) else None for _, v in probed])
