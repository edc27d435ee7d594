"""Retrieved passages: rank, BM25 score, title and text with the query's matched terms
highlighted. Each passage can be expanded (enter / click) and switched off (space /
click on its dot) so the next run of the same question leaves it out.

After a dynamic rerank the list shows every BM25 candidate: the kept ones first, with
their new rank and their BM25 rank ("1 (bm25 #4)"), then the dropped ones, greyed and
switched off (space switches one back on for the next run). When the reranker's reply
was unusable, a one-line note above them says so; enter (or a click) on the note
shows the raw reply, which is also its tooltip."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual import events
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Static

if TYPE_CHECKING:
    from engine.corpus import Passage
    from engine.retrieval import Hit
    from tui.reranking import RerankRow

_WORD = re.compile(r"[^\W_]+")


NO_MATCH = "No passage matched the question: the parametric methods have nothing to inject."


def highlight_terms(text: str, terms: Sequence[str], style: str = "bold $accent underline") -> Content:
    """`text` with every word that is one of `terms` (case-insensitive) emphasised."""
    content = Content(text)
    wanted = {t.lower() for t in terms}
    if not wanted:
        return content
    for match in _WORD.finditer(text):
        if match.group().lower() in wanted:
            content = content.stylize(style, match.start(), match.end())
    return content


def lora_facts(passage: Passage, recipe: str) -> Content:
    """"PRAG LoRA (facts recipe, 24 of 36 pairs) learns: 1638 · salt traders · ...": the answers it is
    trained on. A question whose answer is not among them gets nothing from PRAG but a pull elsewhere."""
    from engine.offline.encode import recipe_pairs
    from engine.offline.recipes import recipe_config

    pairs, made = recipe_pairs(passage, recipe_config(recipe))
    answers = list(dict.fromkeys(pair.answer for pair in pairs))
    kept = f"{len(pairs)} of {made} pairs" if made > len(pairs) else f"{len(pairs)} pairs"
    return Content.assemble(("PRAG LoRA ", "bold $secondary"), (f"({recipe} recipe, {kept}) learns: ", "$text-muted"),
                            " · ".join(answers) if answers else "nothing (no sentence to ask about)")


class PassageItem(Widget, can_focus=True):
    """One passage; one line when collapsed, the full text when expanded."""

    DEFAULT_CSS = """
    PassageItem {
        height: auto;
        padding: 0 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    PassageItem.-expanded {
        text-wrap: wrap;
        margin-bottom: 1;
    }
    PassageItem:focus {
        background: $boost;
    }
    PassageItem.-excluded {
        color: $text-disabled;
    }
    PassageItem.-dropped {
        text-style: italic;
    }
    """

    BINDINGS = [
        Binding("space", "toggle_included", "Use/skip", id="passage-toggle"),
        Binding("enter", "toggle_expanded", "Expand", id="passage-expand"),
        Binding("up", "step(-1)", "Previous passage", show=False),
        Binding("down", "step(1)", "Next passage", show=False),
    ]

    included: reactive[bool] = reactive(True)
    """Whether the next run of this question uses the passage."""
    expanded: reactive[bool] = reactive(False)
    """Whether the whole text is shown."""

    @dataclass
    class Toggled(Message):
        """A passage was switched on or off."""

        item: PassageItem

        @property
        def control(self) -> PassageItem:
            return self.item

    def __init__(self, hit: Hit, scored: bool, included: bool = True, bm25_rank: int | None = None, dropped: bool = False) -> None:
        # set_reactive below skips watch_included, so the starting classes are given here
        classes = [name for name, on in (("-dropped", dropped), ("-excluded", not included)) if on]
        super().__init__(classes=" ".join(classes) or None)
        self.hit = hit
        """The passage with its rank (the reranked one after a rerank), score and matched terms."""
        self.scored = scored
        """False when the passages came with a QA item (no BM25 score to show)."""
        self.bm25_rank = bm25_rank
        """Position among the BM25 candidates when the list was reranked; None otherwise."""
        self.dropped = dropped
        """The reranker left this candidate out (shown greyed, below the kept ones)."""
        self.set_reactive(PassageItem.included, included)
        self._facts_for: str | None = None
        self._facts_line: Content | None = None
        if bm25_rank is not None:
            self.tooltip = (
                f"Dropped by the reranker (BM25 #{bm25_rank}); space uses it anyway in the next run."
                if dropped else f"Reranked to #{hit.rank} from BM25 #{bm25_rank}."
            )

    def render(self) -> Content:
        line = self._line()
        facts = self._facts() if self.expanded else None
        return line if facts is None else line + Content("\n") + facts

    def _facts(self) -> Content | None:
        """What this passage's PRAG LoRA is trained on (the recipe's pairs), shown under the expanded text."""
        recipe = getattr(self.parent, "recipe", None)
        if recipe is None:
            return None
        if self._facts_for != recipe:
            self._facts_for, self._facts_line = recipe, lora_facts(self.hit.passage, recipe)
        return self._facts_line

    def _line(self) -> Content:
        hit = self.hit
        mark = Content.styled("●" if self.included else "○", "bold $success" if self.included else "$text-muted")
        score = f"{hit.score:6.2f}" if self.scored else "     -"
        title = Content.styled(hit.passage.title or "(untitled)", "bold")
        if self.bm25_rank is None:
            head = Content.assemble(mark, f" {hit.rank:>2} ", (score, "$text-muted"), " ", title, " · ")
        else:
            rank = "✗" if self.dropped else str(hit.rank)
            origin = f"(bm25 #{self.bm25_rank})"
            tag = Content.assemble(("dropped", "$text-muted"), " · ") if self.dropped else Content("")
            head = Content.assemble(mark, f" {rank:>2} ", (f"{origin:<10}", "$text-muted"), " ", (score, "$text-muted"),
                                    " ", tag, title, " · ")
        # a greyed (switched-off) candidate keeps its matches underlined but not coloured
        style = "bold $accent underline" if self.included or not self.dropped else "underline"
        return head + highlight_terms(hit.passage.text, hit.matched_terms, style)

    def watch_included(self, included: bool) -> None:
        self.set_class(not included, "-excluded")

    def watch_expanded(self, expanded: bool) -> None:
        self.set_class(expanded, "-expanded")

    def action_toggle_included(self) -> None:
        self.included = not self.included
        self.post_message(self.Toggled(self))

    def action_toggle_expanded(self) -> None:
        self.expanded = not self.expanded

    def action_step(self, step: int) -> None:
        siblings = [w for w in self.parent.children if isinstance(w, PassageItem)] if self.parent else []
        index = siblings.index(self) + step
        if 0 <= index < len(siblings):
            siblings[index].focus()

    def on_click(self, event: events.Click) -> None:
        # The dot (first cell) switches the passage; anywhere else expands it.
        if event.x <= 1:
            self.action_toggle_included()
        else:
            self.action_toggle_expanded()


class RerankNote(Widget, can_focus=True):
    """The reranker fell back to BM25 order: one warning line; enter or a click shows its raw reply."""

    DEFAULT_CSS = """
    RerankNote {
        height: auto;
        padding: 0 1;
        color: $warning;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    RerankNote.-expanded {
        text-wrap: wrap;
    }
    RerankNote:focus {
        background: $boost;
    }
    """

    BINDINGS = [Binding("enter", "toggle_expanded", "Reply", tooltip="Show or hide the reranker's raw reply.", id="rerank-reply")]

    expanded: reactive[bool] = reactive(False)
    """Whether the reranker's raw reply is shown under the note."""

    def __init__(self, note: str, raw: str) -> None:
        super().__init__()
        self.note = note
        """Why the reranker's choice was not used (from `RerankResult.note`)."""
        self.raw = raw
        """The reranker's reply, as generated."""
        self.tooltip = f"Reranker replied: {raw!r}"

    def render(self) -> Content:
        # the hint goes before the engine's note, so 80 columns cut the note rather than the hint
        hint = "" if self.expanded else " (enter: its reply)"
        line = Content.assemble(("⚠ Reranker fell back to BM25 order", "bold"), (hint, "$text-muted"), ": ", self.note)
        if not self.expanded:
            return line
        return line + Content.assemble("\n", ("Reranker replied: ", "bold"), (repr(self.raw), "$text"))

    def watch_expanded(self, expanded: bool) -> None:
        self.set_class(expanded, "-expanded")

    def action_toggle_expanded(self) -> None:
        self.expanded = not self.expanded

    def on_click(self) -> None:
        self.action_toggle_expanded()


class PassageList(VerticalScroll, can_focus=False):
    """The passages of the current question, best first."""

    DEFAULT_CSS = """
    PassageList {
        height: auto;
        max-height: 12;
    }
    PassageList > .passages-empty {
        color: $text-muted;
        padding: 0 1;
    }
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.recipe: str | None = None
        """The PRAG recipe whose pairs an expanded passage lists (what its LoRA learns); None: not shown."""

    def show(self, hits: Sequence[Hit], scored: bool = True, included: Sequence[bool] | None = None) -> None:
        """Replace the list; `included[i]` says whether hit i starts switched on."""
        self.remove_children()
        if not hits:
            self.mount(Static(NO_MATCH, classes="passages-empty"))
            return
        flags = list(included) if included is not None else [True] * len(hits)
        self.mount_all(PassageItem(hit, scored, flag) for hit, flag in zip(hits, flags, strict=False))

    def show_reranked(self, rows: Sequence[RerankRow], fallback_note: str | None = None, raw: str = "") -> None:
        """Replace the list with every BM25 candidate: kept ones on, dropped ones off and greyed.

        Args:
            rows: kept candidates in reranked order, then dropped ones (`tui.reranking.rerank_rows`).
            fallback_note: why the reranker's reply was not used; None when it was.
            raw: the reranker's reply, shown on demand under the note.
        """
        self.remove_children()
        widgets: list[Widget] = []
        if fallback_note is not None:
            widgets.append(RerankNote(fallback_note, raw))
        if not rows:
            widgets.append(Static(NO_MATCH, classes="passages-empty"))
        items = [PassageItem(row.hit, True, row.kept, bm25_rank=row.bm25_rank, dropped=not row.kept) for row in rows]
        if fallback_note is None:
            for item in items:  # with a fallback the note carries the reply
                item.tooltip = f"{item.tooltip}\nReranker replied: {raw!r}"
        self.mount_all(widgets + items)

    def show_placeholder(self, text: str) -> None:
        self.remove_children()
        self.mount(Static(text, classes="passages-empty"))

    @property
    def items(self) -> list[PassageItem]:
        return list(self.query_children(PassageItem))

    def included_hits(self) -> list[Hit]:
        return [item.hit for item in self.items if item.included]

    def excluded_hits(self) -> list[Hit]:
        """Switched-off passages the user chose to leave out (not those the reranker dropped)."""
        return [item.hit for item in self.items if not item.included and not item.dropped]
