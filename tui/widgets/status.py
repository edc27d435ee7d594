"""The top line: what is loaded (model, corpus, questions) and what is happening now,
with a progress bar while the engine loads."""

from __future__ import annotations

from typing import Literal

from textual.containers import Horizontal
from textual.content import Content
from textual.widgets import Label, ProgressBar

Tone = Literal["idle", "busy", "ok", "warning", "error"]


class StatusLine(Horizontal):
    DEFAULT_CSS = """
    StatusLine {
        height: 1;
        background: $panel;
        padding: 0 1;
    }
    StatusLine #status-title {
        width: 1fr;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    StatusLine #status-state {
        width: auto;
        max-width: 75%;
        text-wrap: nowrap;
        text-overflow: ellipsis;
        padding-left: 1;
    }
    StatusLine #status-progress {
        width: 24;
        display: none;
    }
    StatusLine #status-progress Bar {
        width: 24;
    }
    StatusLine.-loading #status-progress {
        display: block;
    }
    StatusLine.-busy #status-state { color: $accent; }
    StatusLine.-ok #status-state { color: $success; }
    StatusLine.-warning #status-state { color: $warning; }
    StatusLine.-error #status-state { color: $error; }
    """

    def compose(self):
        yield Label(id="status-title")
        yield ProgressBar(id="status-progress", show_eta=False, show_percentage=False)
        yield Label(id="status-state")

    def set_title(self, title: Content | str) -> None:
        self.query_one("#status-title", Label).update(title)

    def show_session(self, model: str, corpus: str | None, passages: int | None, questions: int) -> None:
        """What is loaded: the model, the corpus (None while the model loads) with its size when known, the QA questions."""
        parts: list[str | tuple[str, str]] = [("prag-explorer", "bold"), " │ "]
        if corpus is None:
            parts.append((f"{model} (loading)", "$text-muted"))
        else:
            parts += [model, " │ ", corpus if passages is None else f"{corpus} ({passages} passages)"]
        if questions:
            parts += [" │ ", f"{questions} questions"]
        self.set_title(Content.assemble(*parts))

    def set_state(self, text: str, tone: Tone = "idle") -> None:
        for name in ("busy", "ok", "warning", "error"):
            self.set_class(name == tone, f"-{name}")
        self.query_one("#status-state", Label).update(Content(text))

    def set_progress(self, done: int | None, total: int | None) -> None:
        """Show the load bar (indeterminate when total is None); `done=None` hides it."""
        self.set_class(done is not None, "-loading")
        if done is not None:
            self.query_one("#status-progress", ProgressBar).update(total=total, progress=done)
