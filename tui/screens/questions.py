"""Pick a question from the loaded QA file; gold answers (and conflict records) shown."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from textual import on
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList, Static
from textual.widgets.option_list import Option

if TYPE_CHECKING:
    from engine.qa import QAItem

SHOWN_LIMIT = 500
"""Options listed at once; the filter narrows big files (SQuAD has 10k questions)."""


def matches(item: QAItem, words: list[str]) -> bool:
    """Every word occurs in the id, question or answers; the word `conflict` keeps conflict records only."""
    haystack = f"{item.id} {item.question} {' '.join(item.answers)}".lower()
    for word in words:
        if word == "conflict":
            if item.conflict is None:
                return False
        elif word not in haystack:
            return False
    return True


class QuestionBrowser(ModalScreen["QAItem | None"]):
    """Type to filter, arrows to move, enter to run the question, escape to close."""

    BINDINGS = [
        Binding("escape", "dismiss(None)", "Close", id="browser-close"),
        Binding("down", "focus_list", "To the list", show=False),
    ]

    def __init__(self, items: Sequence[QAItem], source: str) -> None:
        super().__init__()
        self.items = list(items)
        """Every question of the QA file."""
        self.source = source
        """File name shown in the title."""
        self.shown: list[QAItem] = []
        """The questions listed now, in option order."""

    def compose(self):
        with Vertical(id="browser"):
            yield Label(id="browser-title")
            yield Input(placeholder="Filter: words, an id, or 'conflict'", id="browser-filter")
            yield OptionList(id="browser-list")
            yield Static(id="browser-detail")

    def on_mount(self) -> None:
        self.query_one("#browser-filter", Input).cursor_blink = self.app.cursor_blink
        self._fill("")

    def _fill(self, text: str) -> None:
        words = text.lower().split()
        found = [item for item in self.items if matches(item, words)]
        self.shown = found[:SHOWN_LIMIT]
        options = self.query_one("#browser-list", OptionList)
        options.clear_options()
        options.add_options(Option(self._prompt(item)) for item in self.shown)
        more = f", first {SHOWN_LIMIT} shown" if len(found) > SHOWN_LIMIT else ""
        self.query_one("#browser-title", Label).update(
            Content.assemble(("Questions", "bold"), f" · {self.source} · {len(found)} of {len(self.items)}{more}")
        )
        if self.shown:
            options.highlighted = 0
        self._detail(self.shown[0] if self.shown else None)

    @staticmethod
    def _prompt(item: QAItem) -> Content:
        flag = Content.styled(" ⚑", "$warning") if item.conflict is not None else Content("")
        return Content.assemble((item.id, "$text-muted"), flag, " ", item.question, (f"  → {item.answers[0]}", "$success"))

    def _detail(self, item: QAItem | None) -> None:
        detail = self.query_one("#browser-detail", Static)
        if item is None:
            detail.update(Content.styled("No question matches the filter.", "$text-muted"))
            return
        parts: list = [("Gold: ", "bold"), (" · ".join(item.answers), "$success")]
        if item.conflict is not None:
            parts += ["\n", ("Conflict: ", "bold"), "memory says ", (" · ".join(item.conflict.original_answers), "$warning"),
                      ", the passage says ", (" · ".join(item.conflict.substituted_answers), "$success")]
        if item.passages:
            parts += ["\n", (f"{len(item.passages)} passage(s) come with it", "$text-muted")]
        detail.update(Content.assemble(*parts))

    @on(Input.Changed, "#browser-filter")
    def _filter(self, event: Input.Changed) -> None:
        self._fill(event.value)

    @on(Input.Submitted, "#browser-filter")
    def _submit_filter(self, event: Input.Submitted) -> None:
        index = self.query_one("#browser-list", OptionList).highlighted
        if index is not None and self.shown:
            self.dismiss(self.shown[index])

    @on(OptionList.OptionHighlighted, "#browser-list")
    def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if 0 <= event.option_index < len(self.shown):
            self._detail(self.shown[event.option_index])

    @on(OptionList.OptionSelected, "#browser-list")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.shown[event.option_index])

    def action_focus_list(self) -> None:
        self.query_one("#browser-list", OptionList).focus()
