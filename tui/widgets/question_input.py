"""The question box: a one-line input with shell-like history on up/down."""

from __future__ import annotations

from textual.binding import Binding
from textual.widgets import Input

HISTORY_LIMIT = 200


class QuestionInput(Input):
    """Up/down walk through earlier questions; the text being typed is kept as a draft."""

    BINDINGS = [
        Binding("up", "history_previous", "Previous question", show=False, id="history-previous"),
        Binding("down", "history_next", "Next question", show=False, id="history-next"),
    ]

    def __init__(self, history: list[str] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.history: list[str] = list(history or [])[-HISTORY_LIMIT:]
        """Earlier questions, oldest first."""
        self._position: int | None = None
        """Index into `history` while browsing it; None while editing a fresh line."""
        self._draft = ""
        """What was typed before browsing started, restored past the newest entry."""

    def remember(self, question: str) -> None:
        """Add a submitted question (moved to the end if it was there already)."""
        question = question.strip()
        if question:
            if question in self.history:
                self.history.remove(question)
            self.history.append(question)
            del self.history[:-HISTORY_LIMIT]
        self._position = None

    def _show(self, text: str) -> None:
        self.value = text
        self.cursor_position = len(text)

    def action_history_previous(self) -> None:
        if not self.history:
            return
        if self._position is None:
            self._draft = self.value
            self._position = len(self.history) - 1
        elif self._position > 0:
            self._position -= 1
        self._show(self.history[self._position])

    def action_history_next(self) -> None:
        if self._position is None:
            return
        if self._position < len(self.history) - 1:
            self._position += 1
            self._show(self.history[self._position])
        else:
            self._position = None
            self._show(self._draft)
