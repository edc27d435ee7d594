"""Retrieved passages: rank, BM25 score, title and text with the query's matched terms
highlighted. Each passage can be expanded (enter / click) and switched off (space /
click on its dot) so the next run of the same question leaves it out."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from textual import events
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Static

if TYPE_CHECKING:
    from engine.retrieval import Hit

_WORD = re.compile(r"[^\W_]+")


def highlight_terms(text: str, terms: Sequence[str]) -> Content:
    """`text` with every word that is one of `terms` (case-insensitive) emphasised."""
    content = Content(text)
    wanted = {t.lower() for t in terms}
    if not wanted:
        return content
    for match in _WORD.finditer(text):
        if match.group().lower() in wanted:
            content = content.stylize("bold $accent underline", match.start(), match.end())
    return content


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

        item: "PassageItem"

        @property
        def control(self) -> "PassageItem":
            return self.item

    def __init__(self, hit: "Hit", scored: bool, included: bool = True) -> None:
        super().__init__()
        self.hit = hit
        """The passage with its rank, score and matched terms."""
        self.scored = scored
        """False when the passages came with a QA item (no BM25 score to show)."""
        self.set_reactive(PassageItem.included, included)

    def render(self) -> Content:
        hit = self.hit
        mark = Content.styled("●" if self.included else "○", "bold $success" if self.included else "$text-muted")
        score = f"{hit.score:6.2f}" if self.scored else "     -"
        title = Content.styled(hit.passage.title or "(untitled)", "bold")
        head = Content.assemble(mark, f" {hit.rank:>2} ", (score, "$text-muted"), " ", title, " · ")
        return head + highlight_terms(hit.passage.text, hit.matched_terms)

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

    def show(self, hits: Sequence["Hit"], scored: bool = True, included: Sequence[bool] | None = None) -> None:
        """Replace the list; `included[i]` says whether hit i starts switched on."""
        self.remove_children()
        if not hits:
            self.mount(Static("No passage matched the question: the parametric methods have nothing to inject.", classes="passages-empty"))
            return
        flags = list(included) if included is not None else [True] * len(hits)
        self.mount_all(PassageItem(hit, scored, flag) for hit, flag in zip(hits, flags))

    def show_placeholder(self, text: str) -> None:
        self.remove_children()
        self.mount(Static(text, classes="passages-empty"))

    @property
    def items(self) -> list[PassageItem]:
        return list(self.query_children(PassageItem))

    def included_hits(self) -> list["Hit"]:
        return [item.hit for item in self.items if item.included]

    def excluded_hits(self) -> list["Hit"]:
        return [item.hit for item in self.items if not item.included]
