"""The six method switches in one line: keys 1-6, arrows + space, or a click."""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding
from textual.content import Content
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget

from engine.methods import METHODS


class MethodBar(Widget, can_focus=True):
    """Which methods the next run uses. Focus it (Tab) to move with arrows and toggle with space."""

    DEFAULT_CSS = """
    MethodBar {
        height: 1;
        width: 1fr;
        padding: 0 1;
        link-style: none;
        link-color: $foreground;
        link-background: transparent;
        link-style-hover: bold;
        link-background-hover: $boost;
    }
    MethodBar:focus {
        background: $boost;
    }
    """

    BINDINGS = [
        Binding("left", "move(-1)", "Previous method", show=False),
        Binding("right", "move(1)", "Next method", show=False),
        Binding("space,enter", "toggle_cursor", "Toggle method", id="toggle-method"),
        *[Binding(str(i), f"toggle_number({i})", show=False) for i in range(1, len(METHODS) + 1)],
    ]

    enabled: reactive[frozenset[str]] = reactive(frozenset(METHODS), init=False)
    """Names of the methods switched on."""
    cursor: reactive[int] = reactive(0, init=False)
    """Index of the method the arrow keys point at (shown while focused)."""

    @dataclass
    class Changed(Message):
        """The set of switched-on methods changed."""

        bar: MethodBar
        enabled: frozenset[str]

        @property
        def control(self) -> MethodBar:
            return self.bar

    def render(self) -> Content:
        parts = self._items(short=False)
        joined = Content("  ").join(parts)
        width = self.content_region.width
        if width and joined.cell_length > width:
            # 80 columns: one space between methods, then short labels if still too wide
            joined = Content(" ").join(parts)
            if joined.cell_length > width:
                joined = Content(" ").join(self._items(short=True))
        return joined

    def _items(self, short: bool) -> list[Content]:
        parts: list[Content] = []
        for index, method in enumerate(METHODS.values()):
            on = method.name in self.enabled
            label = method.label.replace("-combine", "+c") if short else method.label
            mark = Content.styled("●" if on else "○", "bold $success" if on else "$text-muted")
            name = Content.from_markup(f"[@click=toggle('{method.name}')]{index + 1} $label[/]", label=label)
            if not on:
                name = name.stylize("$text-muted strike")
            item = Content.assemble(mark, " ", name)
            if self.has_focus and index == self.cursor:
                item = item.stylize("reverse")
            parts.append(item)
        return parts

    def toggle(self, name: str) -> None:
        """Switch one method on or off."""
        if name not in METHODS:
            return
        self.enabled = self.enabled ^ {name}

    def set_enabled(self, names: frozenset[str]) -> None:
        self.enabled = frozenset(n for n in names if n in METHODS)

    def watch_enabled(self, enabled: frozenset[str]) -> None:
        self.post_message(self.Changed(self, enabled))

    def action_toggle(self, name: str) -> None:
        self.toggle(name)

    def action_move(self, step: int) -> None:
        self.cursor = (self.cursor + step) % len(METHODS)

    def action_toggle_cursor(self) -> None:
        self.toggle(list(METHODS)[self.cursor])

    def action_toggle_number(self, number: int) -> None:
        self.cursor = number - 1
        self.toggle(list(METHODS)[number - 1])

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()
