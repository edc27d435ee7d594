"""What one question produces: each method's `Answer`, the streamed `AnswerUpdate`s, and the
`Comparison` that holds them with the passages. Plain data, shared by the CLI, the TUI and eval."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from engine.progress import Progress

if TYPE_CHECKING:
    from engine.retrieval import Hit

Status = Literal["waiting", "preparing", "encoding", "generating", "done", "cancelled", "error"]


@dataclass(frozen=True)
class CandidateScore:
    """A probe: how likely a method makes a candidate answer as the continuation of its own prompt."""

    text: str
    logprob: float
    """Sum over the candidate's tokens of their log-probability (teacher-forced)."""
    tokens: int

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "logprob": round(self.logprob, 4), "tokens": self.tokens}


@dataclass
class Answer:
    method: str
    label: str
    text: str = ""
    tokens: int = 0
    latency_s: float = 0.0
    error: str | None = None
    norms: list[dict[str, float | int]] | None = None
    status: Status = "waiting"
    progress: Progress | None = None
    """While preparing its adapter: e.g. on-demand PRAG encoding, passage 2 of 3."""
    scores: list[CandidateScore] = field(default_factory=list)
    """Probes of the candidate answers asked for, in the order asked."""

    def score_of(self, text: str) -> float | None:
        return next((s.logprob for s in self.scores if s.text == text), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "text": self.text,
            "tokens": self.tokens,
            "latency_s": round(self.latency_s, 4),
            "error": self.error,
            "norms": self.norms,
            "status": self.status,
            **({"scores": [s.to_json() for s in self.scores]} if self.scores else {}),
        }


@dataclass(frozen=True)
class AnswerUpdate:
    """One method's answer changed (status, progress or new text); `answer` is a snapshot."""

    index: int
    answer: Answer
    delta: str = ""


UpdateCallback = Callable[[AnswerUpdate], None]


@dataclass
class Comparison:
    question: str
    model: str
    hits: list[Hit]
    answers: list[Answer]
    wall_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def answer(self, method: str) -> Answer:
        return next(a for a in self.answers if a.method == method)

    def to_json(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "model": self.model,
            "passages": [
                {"id": h.passage.id, "title": h.passage.title, "text": h.passage.text, "score": round(h.score, 4)} for h in self.hits
            ],
            "answers": [a.to_json() for a in self.answers],
            **self.extra,
        }
