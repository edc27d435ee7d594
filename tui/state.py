"""What the app hands the main screen, as plain data (no widgets, no Textual).

The app owns the settings, the engine and the QA file; the main screen owns the runs.
The screen never reaches into the app: the app gives it these values at construction
and replaces them (the screen keeps each in a reactive) when they change:

- `RunOptions`: how the next question runs (top-k, new tokens, rerank, encoding...);
- `EngineLoad`: how opening an engine is going, for the status line;
- `Labels`: what the status line calls the model and the corpus;
- `QuestionBank`: the QA file's questions, to recognise a typed one.

What flows back (the question history, for one) goes up as messages (tui/messages.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from engine.methods import DEFAULT_LORA_SPAN, DEFAULT_MERGE, METHODS

if TYPE_CHECKING:
    from engine.qa import QAItem


@dataclass(frozen=True)
class RunOptions:
    """How the next question runs; frozen, so a change is a new value the screen's watcher sees."""

    top_k: int = 3
    """Passages every method gets."""
    max_new_tokens: int = 32
    """New tokens per answer."""
    rerank: str = "none"
    """"none": BM25 top-k (or a QA question's own passages); "dynamic": the reranker picks among `candidates`."""
    candidates: int = 10
    """BM25 candidates the dynamic reranker chooses from."""
    encode_missing: bool = True
    """Train missing PRAG LoRAs before answering (slow, once per passage) instead of reporting them missing."""
    use_item_passages: bool = True
    """A question from the QA file uses the passages that come with it rather than retrieving."""
    methods: frozenset[str] = field(default_factory=lambda: frozenset(METHODS))
    """Names of the switched-on methods."""
    recipe: str | None = None
    """PRAG encode recipe whose LoRAs PRAG reads and encodes (engine.offline.recipes); None = the engine's own
    (`--recipe`, PRAG_RECIPE, the config file)."""
    merge: str = DEFAULT_MERGE
    """How the passages' PRAG LoRAs combine (engine.methods.MERGES)."""
    order: str = "best-last"
    """Passage order in the prompt (engine.methods.ORDERS)."""
    layers: tuple[int, int] | None = None
    """Inject PRAG/DyPRAG LoRAs only into these decoder layers; None = all."""
    lora_span: str = DEFAULT_LORA_SPAN
    """Which prompt tokens the combine methods' LoRA acts on (engine.methods.LORA_SPANS)."""

    def injection_label(self) -> str:
        """Recipe, merge, order, layers and LoRA span in a few words, for the status line and notifications."""
        layers = "all layers" if self.layers is None else f"layers {self.layers[0]}-{self.layers[1]}"
        span = "combine LoRA on the question" if self.lora_span == "question" else "combine LoRA on every token"
        return f"recipe {self.recipe or 'as opened'} · merge {self.merge} · {self.order} · {layers} · {span}"


@dataclass(frozen=True)
class EngineLoad:
    """One report on opening an engine: a step with its progress, or the failure."""

    text: str
    done: int | None = None
    total: int | None = None
    """None: unknown (an indeterminate bar)."""
    failed: bool = False
    """`text` says why the engine could not be opened (the old one, if any, stays)."""


@dataclass(frozen=True)
class Labels:
    """Names for the status line before the engine can tell its own (while loading)."""

    model: str
    corpus: str


class QuestionBank:
    """The QA file's questions, findable by their text (ignoring case, spacing and a final "?")."""

    def __init__(self, items: Sequence[QAItem] = ()) -> None:
        self.items: list[QAItem] = list(items)
        self._by_question: dict[str, QAItem] = {}
        for item in self.items:
            self._by_question.setdefault(question_key(item.question), item)

    def __len__(self) -> int:
        return len(self.items)

    def find(self, question: str) -> QAItem | None:
        """The QA record whose question is this one, if any (the first, when the file repeats it)."""
        return self._by_question.get(question_key(question))


def question_key(question: str) -> str:
    return " ".join(question.lower().split()).rstrip("?").strip()
