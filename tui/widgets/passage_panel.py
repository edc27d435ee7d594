"""The passages panel: the passages of the question on screen, where they came from,
and which of them the next run of that question gets.

A run's passages come from one of three places: a QA record's own passages, the BM25
top-k, or the reranker's pick among the BM25 candidates. Running the same question
again keeps what is shown, with the user's switches (and the rerank behind it), only
while it still applies: same question, same QA record, same source. Otherwise the
engine retrieves (and reranks) afresh, the panel shows a placeholder meanwhile, and
the screen hands it the engine's choice when `PassagesRetrieved` arrives.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from textual import on
from textual.containers import Vertical

from engine.retrieval import hits_from_passages
from tui.reranking import candidate_count, rerank_rows, summary
from tui.widgets.passages import PassageItem, PassageList

if TYPE_CHECKING:
    from engine.qa import QAItem
    from engine.rerank import RerankResult
    from engine.retrieval import Hit
    from tui.state import RunOptions

PassageSource = Literal["item", "none", "dynamic"]
"""Where the shown passages came from: the QA record, BM25 top-k, or BM25 candidates reranked."""

PASSAGES_HINT = "Passages retrieved for the question appear here (space: use/skip, enter: expand)."


def passage_source(item: QAItem | None, options: RunOptions) -> PassageSource:
    """Where the next run's passages come from; reranking always retrieves from the corpus."""
    if options.rerank == "dynamic":
        return "dynamic"
    if item is not None and item.passages and options.use_item_passages:
        return "item"
    return "none"


class PassagePanel(Vertical):
    """The bordered panel around the passage list; its title says where the passages came from,
    its subtitle what the user's switches change for the next run."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.question: str | None = None
        """The question whose passages are shown."""
        self.item: QAItem | None = None
        """The QA record of that question, when it came from (or matches) the QA file."""
        self.hits: list[Hit] | None = None
        """All passages shown for the question (switched on or off); None while the engine retrieves."""
        self.source: PassageSource | None = None
        """Where `hits` came from."""
        self.reranked: RerankResult | None = None
        """The reranker's decision behind `hits` (source "dynamic")."""

    def compose(self):
        yield PassageList(id="passages")

    @property
    def passage_list(self) -> PassageList:
        return self.query_one(PassageList)

    def passages_for(self, question: str, item: QAItem | None, options: RunOptions) -> tuple[tuple[Hit, ...] | None, RerankResult | None]:
        """(passages, the rerank they came from) for the next run; passages None = the engine retrieves.

        Shows what it decides at once: a QA record's passages, or a placeholder while retrieving.
        """
        source = passage_source(item, options)
        if question == self.question and item == self.item and self.hits is not None and self.source == source:
            return tuple(self.passage_list.included_hits()), self.reranked  # same question: keep the user's switches
        if source == "item" and item is not None:
            shown = hits_from_passages(item.passages, question)
            flags = [index < options.top_k for index in range(len(shown))]
            self.question, self.item = question, item
            self._show_hits(shown, "item", scored=False, flags=flags, title=f"· from {item.id}")
            return tuple(h for h, on in zip(shown, flags, strict=False) if on), None
        self.question, self.item, self.hits, self.source, self.reranked = question, item, None, None, None
        self.border_subtitle = ""
        count = candidate_count(options.top_k, options.candidates)
        self.passage_list.show_placeholder(f"Reranking {count} BM25 candidates…" if source == "dynamic" else "Retrieving…")
        return None, None

    def show_retrieved(self, hits: Sequence[Hit], top_k: int) -> None:
        """The engine's BM25 top-k for the question on screen."""
        self._show_hits(list(hits), "none", scored=True, title=f"· retrieved top-{top_k}")

    def show_reranked(self, result: RerankResult) -> None:
        """The reranker's pick: kept candidates in their new order, dropped ones greyed below."""
        self.hits, self.source, self.reranked = list(result.kept), "dynamic", result
        self.passage_list.show_reranked(rerank_rows(result), result.note if result.fallback else None, result.raw)
        self.border_title = f"Passages · {summary(result)}"
        self._update_subtitle()

    def reset(self) -> None:
        """Forget the question (e.g. after switching model or corpus)."""
        self.question, self.item, self.hits, self.source, self.reranked = None, None, None, None, None
        self.passage_list.show_placeholder(PASSAGES_HINT)
        self.border_title = "Passages"
        self.border_subtitle = ""

    def _show_hits(self, hits: list[Hit], origin: PassageSource, scored: bool, flags: list[bool] | None = None, title: str = "") -> None:
        self.hits, self.source, self.reranked = list(hits), origin, None
        self.passage_list.show(hits, scored=scored, included=flags)
        self.border_title = f"Passages {title}".strip()
        self._update_subtitle()

    @on(PassageItem.Toggled)
    def _toggled(self, event: PassageItem.Toggled) -> None:
        self._update_subtitle()

    def _update_subtitle(self) -> None:
        items = self.passage_list.items
        off = sum(not item.included and not item.dropped for item in items)
        back = sum(item.included and item.dropped for item in items)
        parts = ([f"{off} off"] if off else []) + ([f"{back} dropped back on"] if back else [])
        self.border_subtitle = f"{', '.join(parts)} for the next run" if parts else ""
