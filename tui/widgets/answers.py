"""One card per method: the streamed answer, its status, latency, tokens, scores, and a
sparkline of the injected LoRA's norm per layer. `AnswerGrid` lays the cards out side by
side (3 or 6 across) on wide terminals and in two compact columns on narrow ones."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.widgets import Sparkline, Static

from engine.methods import METHODS, AdapterSource, Method

from tui.scoring import Follows, Score
from tui.series import layer_totals

if TYPE_CHECKING:
    from engine.explorer import Answer

STATUS_TEXT = {
    "waiting": "· waiting",
    "preparing": "◌ preparing",
    "encoding": "◌ encoding",
    "generating": "▸ generating",
    "done": "✓ done",
    "cancelled": "◼ cancelled",
    "error": "✗ error",
}
FOLLOWS_TEXT: dict[str, str] = {side: f"→\u00a0{side}" for side in ("passage", "memory", "both", "neither")}
"""Conflict side in the meta line (a no-break space keeps the arrow with its word)."""


def _repaint(static: Static, content: Content) -> None:
    """Update a Static, asking for a layout pass only when its height would change.

    A layout pass re-renders the whole screen; while six answers stream, most updates
    only change text inside an unchanged box, so skipping it keeps keys responsive.
    """
    if isinstance(static.content, Content) and static.content.is_same(content):
        return
    width = static.content_region.width
    height, minimum = static.styles.height, static.styles.min_height
    fixed = height is not None and not height.is_auto
    floor = minimum.cells or 0 if minimum is not None and minimum.is_cells else 0
    same = width > 0 and max(content.get_height(static.styles, width), floor) == static.content_region.height
    static.update(content, layout=not (fixed or same))


class AnswerCard(Vertical, can_focus=True):
    """A method's answer. Focus it and press c to copy the answer."""

    BINDINGS = [Binding("c", "copy", "Copy answer", id="copy-answer")]

    def __init__(self, method: Method) -> None:
        super().__init__(id=f"answer-{method.name}", classes="-waiting")
        self.method = method
        self.answer: "Answer | None" = None
        """The latest snapshot for this method in the current run (None before any run)."""
        self.score: Score | None = None
        """EM/F1 against the question's gold answers, once finished."""
        self.follows: Follows | None = None
        """Which side of a knowledge conflict the answer took, once finished."""
        self.module = "all"
        """Which MLP module the sparkline shows."""
        self._note = "…"
        """Placeholder text while there is no answer."""
        self._elapsed: float | None = None
        """Seconds since the run started, shown while generating."""
        self._shown_status = ""
        """The status whose CSS class is set (class changes are costly: only on change)."""
        self.border_title = method.label
        self.border_subtitle = STATUS_TEXT["waiting"]

    def compose(self):
        yield Static(classes="answer-head")
        yield Static(Content.styled("…", "$text-muted"), classes="answer-text")
        yield Static(classes="answer-meta")
        yield Sparkline([], classes="answer-norms")

    def on_mount(self) -> None:
        self._render_state()

    @property
    def text(self) -> str:
        return self.answer.text.strip() if self.answer is not None else ""

    def reset(self, note: str = "…") -> None:
        """Back to waiting, e.g. when a run starts."""
        self.answer, self.score, self.follows = None, None, None
        self._note = note
        self._render_state()

    def show(self, answer: "Answer", elapsed: float | None = None) -> None:
        """Paint a new snapshot; `elapsed` (seconds since the run started) while generating."""
        self.answer = answer
        self._elapsed = elapsed
        self._render_state()

    def set_scores(self, score: Score | None, follows: Follows | None) -> None:
        self.score, self.follows = score, follows
        self._render_state()

    def set_module(self, module: str) -> None:
        self.module = module
        self._render_norms()

    def _status(self) -> str:
        answer = self.answer
        if answer is None:
            return "waiting"
        return answer.status

    def _meta(self) -> str:
        answer = self.answer
        if answer is None:
            return ""
        parts: list[str] = []
        if answer.status in ("done", "cancelled"):
            parts.append(f"{answer.latency_s:.2f} s")
        elif answer.status == "generating" and self._elapsed is not None:
            parts.append(f"{self._elapsed:.1f} s")
        if answer.status in ("generating", "done", "cancelled"):
            parts.append(f"{answer.tokens} tok")
        if self.score is not None:
            parts.append(f"EM {self.score.em:.0f} F1 {self.score.f1:.2f}")
        if self.follows is not None:
            parts.append(FOLLOWS_TEXT[self.follows])
        return " · ".join(parts)

    def _render_state(self) -> None:
        if not self.is_mounted:
            return
        status = self._status()
        answer = self.answer
        if status != self._shown_status:  # class changes restyle the card: only when the status does
            self._shown_status = status
            for name in STATUS_TEXT:
                self.set_class(name == status, f"-{name}")
        label = STATUS_TEXT[status]
        if answer is not None and answer.status == "encoding" and answer.detail:
            label = f"◌ {answer.detail}"
        if self.border_subtitle != label:
            self.border_subtitle = label
        if answer is None:
            body = Content.styled(self._note, "$text-muted")
        elif answer.error:
            body = Content.styled(answer.error, "$text-error")
        elif answer.text.strip():
            body = Content(answer.text.strip())
        elif answer.status in ("done", "cancelled"):
            body = Content.styled("(empty answer)", "$text-muted")
        else:
            body = Content.styled("…", "$text-muted")
        meta = self._meta()
        head = Content.assemble((self.method.label, "bold"), " ", (label, "$text-muted"))
        _repaint(self.query_one(".answer-head", Static), head)
        _repaint(self.query_one(".answer-text", Static), body)
        meta_static = self.query_one(".answer-meta", Static)
        if meta_static.display != bool(meta):
            meta_static.display = bool(meta)
        _repaint(meta_static, Content.styled(meta, "$text-muted"))
        self._render_norms()

    def _render_norms(self) -> None:
        sparkline = self.query_one(".answer-norms", Sparkline)
        data = layer_totals(self.answer.norms, self.module) if self.answer is not None else []
        has = self.method.adapter is not AdapterSource.NONE and bool(data)
        self.set_class(has, "-norms")
        if has and list(sparkline.data or []) != data:
            sparkline.data = data
        tooltip = f"‖ΔW‖ per layer ({self.module}), max {max(data):.3g}" if has else None
        if sparkline.tooltip != tooltip:
            sparkline.tooltip = tooltip

    def action_copy(self) -> None:
        if not self.text:
            self.notify(f"{self.method.label} has no answer to copy yet", severity="warning")
            return
        self.app.copy_to_clipboard(self.text)
        self.notify(f"Copied the {self.method.label} answer", title="Clipboard")


class AnswerGrid(VerticalScroll, can_focus=False):
    """The six cards; a card is shown when its method is on or has an answer in this run."""

    def compose(self):
        for method in METHODS.values():
            yield AnswerCard(method)

    def card(self, name: str) -> AnswerCard:
        return self.query_one(f"#answer-{name}", AnswerCard)

    @property
    def cards(self) -> list[AnswerCard]:
        return list(self.query_children(AnswerCard))

    def arrange_cards(self, enabled: Iterable[str], in_run: Iterable[str]) -> None:
        """Show enabled methods and those in the current run; dim the ones switched off since."""
        enabled, in_run = set(enabled), set(in_run)
        for card in self.cards:
            name = card.method.name
            card.display = name in enabled or name in in_run
            card.set_class(name not in enabled, "-off")
