"""One card per method: the streamed answer, its status, latency, tokens, scores, and a
sparkline of the injected LoRA's norm per layer. `AnswerGrid` lays the cards out side by
side (3 or 6 across) on wide terminals and in two compact columns on narrow ones, and
paints the run in flight: the worker thread writes answer snapshots into the grid's
`StreamBuffer`, and a 20 Hz timer paints the latest of each (a burst of tokens costs
one repaint, so typing stays fluid while six answers stream)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.timer import Timer
from textual.widgets import Sparkline, Static

from engine.methods import METHODS, AdapterSource, Method
from tui.scoring import Follows, Score, follows, gold_gains, score
from tui.series import layer_totals
from tui.session import StreamBuffer

if TYPE_CHECKING:
    from engine.explorer import Answer
    from engine.progress import Progress
    from engine.qa import QAItem

FLUSH_INTERVAL_S = 0.05
"""How often streamed tokens are painted (coalesced): 20 times a second."""
ELAPSED_INTERVAL_S = 0.2
"""How often the running seconds of a card without new tokens are refreshed."""
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


def progress_label(progress: Progress) -> str:
    """A card's status while its adapter is prepared, e.g. "◌ encoding PRAG LoRAs 2/3 · Velmora".

    The number is the passage being worked on (the engine reports how many are done), so
    the first one reads 1/3 rather than 0/3; the info is the engine's own (the passage
    at the start, then the training step and loss).
    """
    text = progress.label[:1].lower() + progress.label[1:]
    if progress.total:
        text += f" {min(progress.done + 1, progress.total)}/{progress.total}"
    info = progress.info.removeprefix("encoding ").strip()
    return f"◌ {text}" + (f" · {info}" if info else "")


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
        self.answer: Answer | None = None
        """The latest snapshot for this method in the current run (None before any run)."""
        self.score: Score | None = None
        """EM/F1 against the question's gold answers, once finished."""
        self.follows: Follows | None = None
        """Which side of a knowledge conflict the answer took, once finished."""
        self.gold_gain: float | None = None
        """log p(gold answer) under this method's prompt minus under vanilla's: the probe's verdict."""
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
        self.answer, self.score, self.follows, self.gold_gain = None, None, None, None
        self.border_title = self.method.label
        self._note = note
        self._render_state()

    def show(self, answer: Answer, elapsed: float | None = None) -> None:
        """Paint a new snapshot; `elapsed` (seconds since the run started) while generating."""
        self.answer = answer
        self._elapsed = elapsed
        self._render_state()

    def set_scores(self, score: Score | None, follows: Follows | None, gold_gain: float | None = None) -> None:
        self.score, self.follows, self.gold_gain = score, follows, gold_gain
        # In the title, where it fits at any width: log p(gold) here minus under vanilla, in nats.
        shown = gold_gain is not None and self.method.name != "vanilla"
        self.border_title = f"{self.method.label} · gold {gold_gain:+.1f}" if shown else self.method.label
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
        if answer is not None and answer.status == "encoding" and answer.progress is not None:
            label = progress_label(answer.progress)
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
        gain = f" · gold {self.gold_gain:+.1f}" if self.gold_gain is not None and self.method.name != "vanilla" else ""
        head = Content.assemble((self.method.label, "bold"), " ", (label, "$text-muted"), (gain, "$text-accent"))
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

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.buffer = StreamBuffer()
        """Streamed snapshots from the worker thread, drained by `_flush`."""
        self.run_methods: list[Method] = []
        """Methods of the current run, in answer order."""
        self.answers: list[Answer | None] = []
        """Latest snapshot per run method."""
        self._started = 0.0
        self._last_tick = 0.0
        self._timer: Timer | None = None

    def compose(self):
        for method in METHODS.values():
            yield AnswerCard(method)

    def on_mount(self) -> None:
        self._timer = self.set_interval(FLUSH_INTERVAL_S, self._flush, pause=True)

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

    # --- the run in flight -------------------------------------------------------------

    def start_run(self, run_id: int, methods: Sequence[Method]) -> None:
        """Back to waiting ("not in this run" for the other cards); paint run `run_id`'s stream as it comes."""
        self.buffer.start(run_id)
        self.run_methods = list(methods)
        self.answers = [None] * len(self.run_methods)
        for card in self.cards:
            card.reset("…" if card.method in self.run_methods else "not in this run")
        self._started = self._last_tick = time.monotonic()
        if self._timer is not None:
            self._timer.resume()

    def finish_run(self, answers: Sequence[Answer], item: QAItem | None) -> None:
        """The final answers, scored against the QA record's gold (and conflict) when there is one."""
        self.stop()
        self.buffer.drain()  # snapshots older than the final answers
        self.answers = list(answers)
        gains = gold_gains(answers, item) if item is not None else {}
        for answer in answers:
            card = self.card(answer.method)
            card.show(answer)
            if item is not None and answer.status == "done" and not answer.error:
                card.set_scores(score(answer.text, item.answers), follows(answer.text, item.conflict) if item.conflict else None,
                                gains.get(answer.method))

    def fail_run(self) -> None:
        """The run ended without answers: cards it never reached say so."""
        self.stop()
        for card in self.cards:
            if card.method in self.run_methods and card.answer is None:
                card.reset("not run")

    def forget(self, run_id: int) -> None:
        """No run on screen; snapshots still arriving from older runs than `run_id` are dropped."""
        self.stop()
        self.buffer.start(run_id)
        self.run_methods, self.answers = [], []
        for card in self.cards:
            card.reset()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.pause()

    def _flush(self) -> None:
        """Paint what streamed in since the last tick (UI thread, every FLUSH_INTERVAL_S)."""
        pending = self.buffer.drain()
        now = time.monotonic()
        elapsed = now - self._started
        tick = now - self._last_tick >= ELAPSED_INTERVAL_S
        if tick:
            self._last_tick = now
        for index, method in enumerate(self.run_methods):
            answer = pending.get(index)
            if answer is not None:
                self.answers[index] = answer
            elif not (tick and self.answers[index] is not None and self.answers[index].status == "generating"):
                continue
            self.card(method.name).show(self.answers[index], elapsed)


class GoldLine(Static):
    """The QA record's gold answers above the cards, and for a knowledge conflict the model's memory."""

    def show_item(self, item: QAItem | None, lora_trained: bool | None = None) -> None:
        """`lora_trained`: whether the run's PRAG LoRAs were trained on a gold answer (None: not known, or no PRAG ran)."""
        self.display = item is not None
        if item is None:
            return
        parts = [("Gold", "bold"), f" ({item.id}): ", (" · ".join(item.answers), "$success")]
        if item.conflict is not None:
            parts += ["   ", ("Memory", "bold"), ": ", (" · ".join(item.conflict.original_answers), "$warning"),
                      ("   ctrl+t: conflict view", "$text-muted")]
        if lora_trained is not None:  # last: on a narrow screen the line is cut here first
            parts += ["   ", ("PRAG LoRA trained on it" if lora_trained else "PRAG LoRA never trained on it",
                             "$success" if lora_trained else "$warning")]
        self.update(Content.assemble(*parts))
