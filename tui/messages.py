"""Messages that cross from worker threads to the UI thread, and from the main screen up to the app.

`post_message` is thread-safe, so workers report through these instead of touching
widgets. Each one carries the run (or load) id it belongs to, so late messages from
a superseded worker are recognised and dropped. The main screen knows nothing of the
app: what the app must keep (the question history) bubbles up as a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from textual.message import Message

from engine.errors import PragError
from engine.progress import Progress

if TYPE_CHECKING:
    from engine.config import Settings
    from engine.explorer import Comparison
    from engine.qa import QAItem
    from engine.rerank import RerankResult
    from engine.retrieval import Hit


@dataclass
class EngineProgressed(Message):
    """The engine loader reported a step (e.g. "Loading SmolLM2-135M-Instruct 0/1")."""

    load_id: int
    progress: Progress

    def can_replace(self, message: Message) -> bool:
        # Only the newest progress matters; a queued older one is dropped.
        return isinstance(message, EngineProgressed) and message.load_id == self.load_id


@dataclass
class EngineOpened(Message):
    """A new engine is ready to answer."""

    load_id: int
    engine: Any
    settings: Settings


@dataclass
class EngineFailed(Message):
    """Opening an engine failed with an expected error."""

    load_id: int
    error: PragError


@dataclass
class QuestionsLoaded(Message):
    """The QA file for the questions browser was read."""

    items: list[QAItem]


@dataclass
class PassagesRetrieved(Message):
    """The worker retrieved (and maybe reranked) passages for a run, before generating."""

    run_id: int
    hits: list[Hit]
    """The passages every method gets."""
    rerank: RerankResult | None = None
    """The reranker's decision (kept, dropped, raw reply, fallback) when the run reranked."""
    seconds: float | None = None
    """Retrieval plus reranking, as the engine timed it."""


@dataclass
class ComparisonFinished(Message):
    """A run ended: done, cancelled or partly failed; answers are final."""

    run_id: int
    comparison: Comparison


@dataclass
class RunFailed(Message):
    """A run stopped with an expected error before producing a comparison."""

    run_id: int
    error: PragError


@dataclass
class HistoryChanged(Message):
    """A question was asked: the question box's history, for the app to keep between sessions."""

    history: list[str]
