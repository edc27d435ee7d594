"""The explorer screen: question, method switches, passages, and three views of the run
(answers side by side, per-layer LoRA norms, knowledge conflict).

The screen owns one run at a time. Enter builds a `RunRequest` on the UI thread and
hands it to `_generate`, a thread worker in the exclusive "generation" group, so a
new question cancels the old one. Tokens land in a `StreamBuffer` that a 20 Hz timer
drains into the cards; the final `Comparison` arrives as a message.

With dynamic reranking on (ctrl+g, the palette, or `prag tui --rerank dynamic`), the
same worker first asks the engine's `select` which of the top BM25 candidates to keep,
shows them (kept in their new order, dropped ones greyed), then compares on the kept
ones. Questions from the QA file are then retrieved from the corpus and reranked too,
rather than using the passages that come with them.
"""

from __future__ import annotations

import threading
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from textual import on, work
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.reactive import reactive
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Static, TabbedContent, TabPane
from textual.worker import Worker, WorkerState, get_current_worker

from engine.errors import PragError
from engine.methods import METHODS, AdapterSource
from engine.retrieval import hits_from_passages

from tui.export import export_comparison
from tui.messages import ComparisonFinished, PassagesRetrieved, RunFailed
from tui.reranking import candidate_count, rerank_block, rerank_rows, summary
from tui.scoring import follows, score
from tui.session import RunRequest, StreamBuffer
from tui.widgets.answers import AnswerCard, AnswerGrid
from tui.widgets.conflict import ConflictPanel
from tui.widgets.methods import MethodBar
from tui.widgets.norms import NormsPanel
from tui.widgets.passages import PassageItem, PassageList
from tui.widgets.question_input import QuestionInput
from tui.widgets.status import StatusLine

if TYPE_CHECKING:
    from engine.explorer import Answer, Comparison
    from engine.methods import Method
    from engine.qa import QAItem
    from engine.rerank import RerankResult
    from engine.retrieval import Hit

    from tui.app import PragApp

PassageSource = Literal["item", "none", "dynamic"]
"""Where the shown passages came from: the QA record, BM25 top-k, or BM25 candidates reranked."""

FLUSH_INTERVAL_S = 0.05
"""How often streamed tokens are painted (coalesced): 20 times a second."""
ELAPSED_INTERVAL_S = 0.2
"""How often the running seconds of a card without new tokens are refreshed."""
VIEWS = ("tab-answers", "tab-norms", "tab-conflict")
rerank_clock = time.perf_counter
"""Times retrieval plus reranking (shown as "+ rerank 1.23 s"); the snapshot tests pin it."""
PASSAGES_HINT = "Passages retrieved for the question appear here (space: use/skip, enter: expand)."


class MainScreen(Screen):
    """One question, the passages it retrieved, and each method's answer."""

    app: "PragApp"

    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide"), (170, "-ultrawide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (34, "-tall")]
    BINDING_GROUP_TITLE = "Explorer"

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", tooltip="Stop generating; partial answers are kept.", id="cancel"),
        Binding("ctrl+r", "rerun", "Run", tooltip="Run the question again with the current methods and passages.", id="run"),
        Binding("ctrl+o", "browse", "Questions", tooltip="Pick a question from the QA file.", id="browse-questions"),
        Binding("ctrl+t", "next_view", "View", tooltip="Answers → LoRA norms → conflict.", id="next-view"),
        Binding("ctrl+s", "export", "Export", tooltip="Write the comparison to Markdown and JSON.", id="export"),
        # One key, two bindings: check_action shows the one that applies, so the footer reads the current mode.
        Binding("ctrl+g", "set_rerank('dynamic')", "Rerank off", tooltip="Switch dynamic reranking on: the model picks which BM25 candidates every method gets.", id="toggle-rerank"),
        Binding("ctrl+g", "set_rerank('none')", "Rerank on", tooltip="Switch dynamic reranking off: plain BM25 top-k.", id="toggle-rerank"),
        Binding("ctrl+y", "copy", "Copy", show=False, tooltip="Copy the focused answer, or all answers.", id="copy"),
        Binding("ctrl+l", "focus_question", "Question", show=False, id="focus-question"),
        Binding("f1,question_mark", "help", "Help", key_display="?", tooltip="Keys and what each view shows.", id="help"),
        *[Binding(str(i), f"toggle_method({i})", show=False) for i in range(1, len(METHODS) + 1)],
    ]

    running: reactive[bool] = reactive(False, bindings=True)
    """A generation is in flight (enables Cancel in the footer)."""
    rerank: reactive[str] = reactive("none", bindings=True, init=False)
    """Passage selection for the next run: "none" (BM25 top-k) or "dynamic" (the reranker picks); shown in the footer."""

    def __init__(self, rerank: str = "none") -> None:
        super().__init__()
        self.set_reactive(MainScreen.rerank, rerank)
        self.buffer = StreamBuffer()
        """Streamed snapshots from the worker thread, drained by `_flush`."""
        self.run_id = 0
        """Id of the newest run; messages of older runs are ignored."""
        self.question: str | None = None
        """The question whose passages are shown."""
        self.item: "QAItem | None" = None
        """The QA record of that question, when it came from (or matches) the QA file."""
        self.hits: "list[Hit] | None" = None
        """All passages shown for the question (switched on or off)."""
        self.hits_source: PassageSource | None = None
        """Where `hits` came from; a re-run keeps them (and the user's switches) only while this still applies."""
        self.reranked: "RerankResult | None" = None
        """The reranker's decision behind `hits` (source "dynamic")."""
        self.run_methods: "list[Method]" = []
        """Methods of the current run, in answer order."""
        self.answers: "list[Answer | None]" = []
        """Latest snapshot per run method."""
        self.comparison: "Comparison | None" = None
        """The last finished (or cancelled) run, for export."""
        self.pending: "tuple[str, QAItem | None] | None" = None
        """A question asked before the engine was ready."""
        self._worker: Worker | None = None
        self._engine_lock = threading.Lock()
        """One run talks to the engine at a time: a cancelled run's thread may still be
        finishing its current token when the next question starts, and the engine's
        model hooks are not safe to share between two comparisons."""
        self._started = 0.0
        self._last_tick = 0.0
        self._timer: Timer | None = None

    # --- layout ---------------------------------------------------------------------

    def compose(self):
        yield StatusLine()
        yield QuestionInput(
            self.app.history,
            placeholder="Ask a question and press enter (↑/↓ history, ctrl+o picks one from the QA file)",
            id="question",
        )
        yield MethodBar(id="methods")
        with Vertical(id="passages-panel"):
            yield PassageList(id="passages")
        with TabbedContent(id="views"):
            with TabPane("Answers", id="tab-answers"):
                yield Static(id="gold")
                yield AnswerGrid(id="answers")
            with TabPane("LoRA norms", id="tab-norms"):
                yield NormsPanel(id="norms")
            with TabPane("Conflict", id="tab-conflict"):
                yield ConflictPanel(id="conflict")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.question_input.cursor_blink = self.app.cursor_blink
        self._timer = self.set_interval(FLUSH_INTERVAL_S, self._flush, pause=True)
        self._reset_view()
        self.refresh_title()
        self.question_input.focus()
        # After the first frame: the user sees the screen (and can type) while the model loads.
        self.call_after_refresh(self.app.start)

    def refresh_title(self) -> None:
        """Model, corpus and questions in the status line."""
        app = self.app
        parts = [("prag-explorer", "bold")]
        engine = app.engine
        if engine is not None:
            parts += [" │ ", engine.loaded.model_id]
            size = _corpus_size(engine)
            parts += [" │ ", app.corpus_label if size is None else f"{app.corpus_label} ({size} passages)"]
        else:
            parts += [" │ ", (f"{app.model_label} (loading)", "$text-muted")]
        if app.qa_items:
            parts += [" │ ", f"{len(app.qa_items)} questions"]
        self.status.set_title(Content.assemble(*parts))

    # --- engine lifecycle (called by the app) ------------------------------------------

    def engine_loading(self, label: str, done: int | None, total: int | None) -> None:
        self.status.set_progress(done if done is not None else 0, total)
        self.status.set_state(label + ("" if self.pending is None else "; your question runs when ready"), "busy")

    def engine_ready(self) -> None:
        """A (new) engine is open: answers of the previous one no longer apply."""
        if self.running:
            self.action_cancel()
            self._stop()
        self.run_id += 1  # late messages of a run on the old engine are dropped
        self.buffer.start(self.run_id)
        self.status.set_progress(None, None)
        self.refresh_title()
        self.status.set_state("Ready: type a question and press enter", "ok")
        self._reset_view()
        if self.pending is not None:
            question, item = self.pending
            self.pending = None
            self.ask(question, item)

    def engine_failed(self, text: str) -> None:
        self.status.set_progress(None, None)
        self.status.set_state(text, "error")

    # --- asking -----------------------------------------------------------------------

    @on(QuestionInput.Submitted, "#question")
    def _submitted(self, event: QuestionInput.Submitted) -> None:
        self.ask(event.value)

    def pick(self, item: "QAItem") -> None:
        """Run a question chosen in the browser."""
        self.question_input.value = item.question
        self.question_input.cursor_position = len(item.question)
        self.ask(item.question, item)

    def ask(self, question: str, item: "QAItem | None" = None) -> None:
        """Run `question` with the switched-on methods (cancels a run in flight)."""
        question = question.strip()
        if not question:
            self.notify("Type a question first.", severity="warning")
            return
        self.question_input.remember(question)
        self.app.save_history(self.question_input.history)
        item = item or self.app.find_item(question)
        if self.app.engine is None:
            self.pending = (question, item)
            self.status.set_state("Queued: your question runs as soon as the model is ready", "busy")
            return
        methods = [m for m in METHODS.values() if m.name in self.method_bar.enabled]
        if not methods:
            self.notify("Every method is switched off: press 1-6 (outside the question box) or click one.", severity="warning")
            return
        settings = self.app.settings
        hits: "tuple[Hit, ...] | None"
        reranked: "RerankResult | None" = None
        source = self._passage_source(item)
        if question == self.question and item == self.item and self.hits is not None and self.hits_source == source:
            hits = tuple(self.passages.included_hits())  # same question: keep the user's passage switches
            reranked = self.reranked
        elif source == "item" and item is not None:
            shown = hits_from_passages(item.passages, question)
            flags = [index < settings.top_k for index in range(len(shown))]
            self._show_hits(question, item, shown, "item", scored=False, flags=flags, source=f"· from {item.id}")
            hits = tuple(h for h, on in zip(shown, flags) if on)
        else:
            hits = None
            self.question, self.item, self.hits, self.hits_source, self.reranked = question, item, None, None, None
            self.passages_panel.border_subtitle = ""
            self.passages.show_placeholder(
                f"Reranking {candidate_count(settings.top_k, self.app.rerank_candidates)} BM25 candidates…" if source == "dynamic" else "Retrieving…"
            )
        self._start(RunRequest(
            run_id=self.run_id + 1,
            question=question,
            methods=tuple(methods),
            hits=hits,
            item=item,
            top_k=settings.top_k,
            max_new_tokens=settings.max_new_tokens,
            encode_missing=self.app.encode_missing,
            rerank=self.rerank,
            candidates=self.app.rerank_candidates,
            reranked=reranked,
        ))

    def _passage_source(self, item: "QAItem | None") -> PassageSource:
        """Where the next run's passages come from; reranking always retrieves from the corpus."""
        if self.rerank == "dynamic":
            return "dynamic"
        if item is not None and item.passages and self.app.use_item_passages:
            return "item"
        return "none"

    def _show_hits(self, question: str, item: "QAItem | None", hits: "list[Hit]", origin: PassageSource, scored: bool,
                   flags: list[bool] | None = None, source: str = "") -> None:
        self.question, self.item, self.hits = question, item, list(hits)
        self.hits_source, self.reranked = origin, None
        self.passages.show(hits, scored=scored, included=flags)
        self.passages_panel.border_title = f"Passages {source}".strip()
        self._update_passage_subtitle()

    def _show_reranked(self, result: "RerankResult") -> None:
        self.hits, self.hits_source, self.reranked = list(result.kept), "dynamic", result
        self.passages.show_reranked(rerank_rows(result), result.note if result.fallback else None, result.raw)
        self.passages_panel.border_title = f"Passages · {summary(result)}"
        self._update_passage_subtitle()

    def _start(self, request: RunRequest) -> None:
        self.run_id = request.run_id
        self.buffer.start(request.run_id)
        self.run_methods = list(request.methods)
        self.answers = [None] * len(self.run_methods)
        self.comparison = None
        for card in self.grid.cards:
            if card.method in self.run_methods:
                card.reset()
            else:
                card.reset("not in this run")
        self._arrange()
        self._show_gold(request.item)
        self.conflict.show(request.item, [])
        self.norms.show([])
        self._set_conflict_tab(request.item)
        self.running = True
        self._started = self._last_tick = time.monotonic()
        if request.hits is None and request.rerank == "dynamic":
            self.status.set_state(f"Reranking {candidate_count(request.top_k, request.candidates)} candidates… (esc cancels)", "busy")
        else:
            self.status.set_state(f"Generating {len(self.run_methods)} answers… (esc cancels)", "busy")
        if self._timer is not None:
            self._timer.resume()
        self._worker = self._generate(request)

    @work(thread=True, exclusive=True, group="generation", exit_on_error=False,
          description="Retrieve (and maybe rerank) passages and generate every method's answer")
    def _generate(self, request: RunRequest) -> None:
        worker = get_current_worker()
        engine = self.app.engine
        with self._engine_lock:
            if worker.is_cancelled:
                return  # superseded while waiting for the previous run to wind down
            self._run_with(engine, worker, request)

    def _run_with(self, engine, worker: Worker, request: RunRequest) -> None:
        """Retrieve or select (unless given passages) and compare; report through messages (worker thread)."""
        try:
            hits = request.hits
            reranked = request.reranked
            rerank_s: float | None = None
            if hits is None:
                if request.rerank == "dynamic":
                    t0 = rerank_clock()
                    found, reranked = engine.select(request.question, request.top_k, "dynamic", request.candidates)
                    rerank_s = rerank_clock() - t0
                else:
                    found = engine.retrieve(request.question, request.top_k)
                self.post_message(PassagesRetrieved(request.run_id, found, reranked))
                hits = tuple(found)
            comparison = engine.compare(
                request.question,
                list(hits),
                list(request.methods),
                request.max_new_tokens,
                partial(self.buffer.put, request.run_id),
                worker.cancelled_event,
                request.encode_missing,
            )
        except PragError as error:
            self.post_message(RunFailed(request.run_id, error))
            return
        if reranked is not None:
            comparison.extra["rerank"] = rerank_block(reranked, request.candidates, rerank_s)
        self.post_message(ComparisonFinished(request.run_id, comparison))

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
            self.grid.card(method.name).show(self.answers[index], elapsed)

    @on(PassagesRetrieved)
    def _passages_retrieved(self, message: PassagesRetrieved) -> None:
        if message.run_id != self.run_id:
            return
        if message.rerank is None:
            self._show_hits(self.question or "", self.item, message.hits, "none", scored=True, source=f"· retrieved top-{self.app.settings.top_k}")
            return
        self._show_reranked(message.rerank)
        if self.running and not (self._worker is not None and self._worker.is_cancelled):
            self.status.set_state(f"Generating {len(self.run_methods)} answers… (esc cancels)", "busy")

    @on(ComparisonFinished)
    def _finished(self, message: ComparisonFinished) -> None:
        if message.run_id != self.run_id:
            return
        self.buffer.drain()
        comparison = message.comparison
        self.comparison = comparison
        self.answers = list(comparison.answers)
        item = self.item
        for answer in comparison.answers:
            card = self.grid.card(answer.method)
            card.show(answer)
            if item is not None and answer.status == "done" and not answer.error:
                card.set_scores(score(answer.text, item.answers), follows(answer.text, item.conflict) if item.conflict else None)
        self.norms.show(comparison.answers)
        self.conflict.show(item, comparison.answers)
        self._stop()
        statuses = [a.status for a in comparison.answers]
        failed = statuses.count("error")
        rerank_s = comparison.extra.get("rerank", {}).get("seconds")
        took = f"{comparison.wall_s:.2f} s" + ("" if rerank_s is None else f" (+ rerank {rerank_s:.2f} s)")
        if "cancelled" in statuses:
            self.status.set_state(f"Cancelled after {took}: partial answers kept", "warning")
        elif failed:
            prag_failed = any(a.status == "error" and METHODS[a.method].adapter is AdapterSource.PRAG for a in comparison.answers)
            hint = " · ctrl+p: encode PRAG LoRAs" if prag_failed and not self.app.encode_missing else ""
            self.status.set_state(f"Done in {took} · {failed}/{len(statuses)} failed{hint}", "warning")
        else:
            self.status.set_state(f"Done in {took}", "ok")

    @on(RunFailed)
    def _failed(self, message: RunFailed) -> None:
        if message.run_id == self.run_id:
            self._run_failed(message.error.title, message.error.one_line())

    @on(Worker.StateChanged)
    def _worker_changed(self, event: Worker.StateChanged) -> None:
        # Unexpected exceptions (not PragError) end here instead of crashing the app.
        if event.worker is self._worker and event.state == WorkerState.ERROR:
            error = event.worker.error
            self._run_failed("Generation failed", f"{type(error).__name__}: {error}")

    def _run_failed(self, title: str, text: str) -> None:
        self._stop()
        for card in self.grid.cards:
            if card.method in self.run_methods and card.answer is None:
                card.reset("not run")
        self.status.set_state(f"{title}: {text}", "error")
        self.notify(text, title=title, severity="error", timeout=8)

    def _stop(self) -> None:
        self.running = False
        if self._timer is not None:
            self._timer.pause()

    # --- actions ----------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel":
            return self.running
        if action == "set_rerank":
            return parameters[0] != self.rerank  # False hides the binding and lets the other ctrl+g one run
        return True

    def action_cancel(self) -> None:
        if self.running and self._worker is not None:
            self._worker.cancel()
            self.status.set_state("Cancelling…", "warning")

    def action_rerun(self) -> None:
        self.ask(self.question_input.value or self.question or "", None)

    def action_browse(self) -> None:
        self.app.action_browse_questions()

    def action_next_view(self) -> None:
        views = self.views
        views.active = VIEWS[(VIEWS.index(views.active) + 1) % len(VIEWS)] if views.active in VIEWS else VIEWS[0]

    def show_view(self, view: str) -> None:
        self.views.active = view

    def action_focus_question(self) -> None:
        self.question_input.focus()

    def action_help(self) -> None:
        self.app.action_show_help()

    def action_set_rerank(self, mode: str) -> None:
        self.rerank = mode

    def toggle_rerank(self) -> None:
        """Switch dynamic reranking on or off for the next run."""
        self.rerank = "none" if self.rerank == "dynamic" else "dynamic"

    def watch_rerank(self, mode: str) -> None:
        if mode == "dynamic":
            count = candidate_count(self.app.settings.top_k, self.app.rerank_candidates)
            text = f"On: the model picks, from the top {count} BM25 candidates, which passages every method gets."
        else:
            text = f"Off: runs use the BM25 top-{self.app.settings.top_k} (or a QA question's own passages)."
        if self.question is not None:
            text += " ctrl+r runs the question again."
        self.notify(text, title="Dynamic rerank")

    def action_toggle_method(self, number: int) -> None:
        self.method_bar.toggle(list(METHODS)[number - 1])

    def toggle_method(self, name: str) -> None:
        self.method_bar.toggle(name)

    def action_copy(self) -> None:
        focused = self.focused

        if isinstance(focused, AnswerCard):
            focused.action_copy()
            return
        done = [(a.label, a.text) for a in self.answers if a is not None and a.text.strip()]
        if not done:
            self.notify("No answer to copy yet.", severity="warning")
            return
        self.app.copy_to_clipboard("\n".join(f"{label}: {text.strip()}" for label, text in done))
        self.notify(f"Copied {len(done)} answers", title="Clipboard")

    def action_export(self) -> None:
        if self.comparison is None:
            self.notify("Nothing to export yet: run a question first (and let it finish or cancel it).", severity="warning")
            return
        excluded = [h.passage.title or h.passage.id for h in self.passages.excluded_hits()] if self.hits else []
        self._write_export(self.comparison, self.item, excluded, self.app.export_dir)

    @work(thread=True, group="export", exit_on_error=False, description="Write the comparison to Markdown and JSON")
    def _write_export(self, comparison: "Comparison", item: "QAItem | None", excluded: list[str], folder: Path) -> None:
        try:
            md, js = export_comparison(comparison, item, folder, excluded)
        except OSError as error:
            self.app.call_from_thread(self.notify, f"Could not write to {folder}: {error.strerror}", title="Export failed", severity="error")
            return
        self.app.call_from_thread(self.app.exported, md, js)

    # --- small reactions ----------------------------------------------------------------

    @on(MethodBar.Changed)
    def _methods_changed(self, event: MethodBar.Changed) -> None:
        self._arrange()

    @on(PassageItem.Toggled)
    def _passage_toggled(self, event: PassageItem.Toggled) -> None:
        self._update_passage_subtitle()

    @on(NormsPanel.ModuleChanged)
    def _module_changed(self, event: NormsPanel.ModuleChanged) -> None:
        for card in self.grid.cards:
            card.set_module(event.module)

    def _update_passage_subtitle(self) -> None:
        items = self.passages.items
        off = sum(not item.included and not item.dropped for item in items)
        back = sum(item.included and item.dropped for item in items)
        parts = ([f"{off} off"] if off else []) + ([f"{back} dropped back on"] if back else [])
        self.passages_panel.border_subtitle = f"{', '.join(parts)} for the next run" if parts else ""

    def _arrange(self) -> None:
        self.grid.arrange_cards(self.method_bar.enabled, [m.name for m in self.run_methods])

    def _show_gold(self, item: "QAItem | None") -> None:
        gold = self.query_one("#gold", Static)
        gold.display = item is not None
        if item is None:
            return
        parts = [("Gold", "bold"), f" ({item.id}): ", (" · ".join(item.answers), "$success")]
        if item.conflict is not None:
            parts += ["   ", ("Memory", "bold"), ": ", (" · ".join(item.conflict.original_answers), "$warning"), ("   ctrl+t: conflict view", "$text-muted")]
        gold.update(Content.assemble(*parts))

    def _set_conflict_tab(self, item: "QAItem | None") -> None:
        tab = self.views.get_tab("tab-conflict")
        tab.label = "Conflict ⚑" if item is not None and item.conflict is not None else "Conflict"

    def _reset_view(self) -> None:
        """Forget the run on screen (e.g. after switching model or corpus)."""
        self.question, self.item, self.hits, self.hits_source, self.reranked = None, None, None, None, None
        self.run_methods, self.answers, self.comparison = [], [], None
        for card in self.grid.cards:
            card.reset()
        self._arrange()
        self.passages.show_placeholder(PASSAGES_HINT)
        self.passages_panel.border_title = "Passages"
        self.passages_panel.border_subtitle = ""
        self.norms.show([])
        self.conflict.show(None, [])
        self._show_gold(None)

    # --- widgets ------------------------------------------------------------------------

    @property
    def status(self) -> StatusLine:
        return self.query_one(StatusLine)

    @property
    def question_input(self) -> QuestionInput:
        return self.query_one("#question", QuestionInput)

    @property
    def method_bar(self) -> MethodBar:
        return self.query_one("#methods", MethodBar)

    @property
    def passages_panel(self) -> Vertical:
        return self.query_one("#passages-panel", Vertical)

    @property
    def passages(self) -> PassageList:
        return self.query_one("#passages", PassageList)

    @property
    def grid(self) -> AnswerGrid:
        return self.query_one("#answers", AnswerGrid)

    @property
    def views(self) -> TabbedContent:
        return self.query_one("#views", TabbedContent)

    @property
    def norms(self) -> NormsPanel:
        return self.query_one("#norms", NormsPanel)

    @property
    def conflict(self) -> ConflictPanel:
        return self.query_one("#conflict", ConflictPanel)


def _corpus_size(engine) -> int | None:
    """Passages behind the retriever, when it can tell (a remote index may not)."""
    try:
        return len(engine.retriever)
    except (AttributeError, TypeError):
        return None
