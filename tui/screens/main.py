"""The explorer screen: question, method switches, passages, and three views of the run
(answers side by side, per-layer LoRA norms, knowledge conflict).

The screen owns one run at a time. Enter builds a `RunRequest` on the UI thread and
hands it to `_generate`, a thread worker in the exclusive "generation" group, so a
new question cancels the old one. The worker runs the engine's whole pipeline
(`tui.run.run_question` around `Engine.ask`): the chosen passages and the final
`Comparison` arrive as messages, tokens stream into the answer grid's buffer. Esc sets
the worker's cancel event, which the engine checks in every stage: the reranker, the
PRAG encoding and the generation.

The screen knows nothing of the app. The app gives it its state (`tui.state`: run
options, the engine, how loading goes, labels, the QA questions) at construction and
by replacing the reactives below; the question history goes back up as a message.

With dynamic reranking on (ctrl+g, the palette, or `prag tui --rerank dynamic`), the
engine first lets the reranker pick which of the top BM25 candidates to keep; the
passages panel shows them (kept in their new order, dropped ones greyed), then every
method answers with the kept ones. Questions from the QA file are then retrieved from
the corpus and reranked too, rather than using the passages that come with them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from textual import on, work
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import TabbedContent, TabPane
from textual.worker import Worker, WorkerState, get_current_worker

from engine.explorer import AskRequest
from engine.methods import METHODS
from engine.probes import ProbeSet
from tui.export import export_comparison
from tui.messages import ComparisonFinished, HistoryChanged, PassagesRetrieved, RunFailed
from tui.reranking import candidate_count
from tui.run import outcome, run_question
from tui.session import Engine, RunRequest
from tui.state import EngineLoad, Labels, QuestionBank, RunOptions
from tui.widgets.answers import AnswerCard, AnswerGrid, GoldLine
from tui.widgets.conflict import ConflictPanel
from tui.widgets.footer import KeyFooter
from tui.widgets.methods import MethodBar
from tui.widgets.norms import NormsPanel
from tui.widgets.passage_panel import PassagePanel
from tui.widgets.passages import PassageList
from tui.widgets.question_input import QuestionInput
from tui.widgets.status import StatusLine

if TYPE_CHECKING:
    from engine.explorer import Answer, Comparison
    from engine.methods import Method
    from engine.qa import QAItem

VIEWS = ("tab-answers", "tab-norms", "tab-conflict")


class MainScreen(Screen):
    """One question, the passages it retrieved, and each method's answer."""

    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide"), (170, "-ultrawide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (34, "-tall")]
    BINDING_GROUP_TITLE = "Explorer"

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", tooltip="Stop the run (reranking, PRAG encoding or generating); partial answers are kept.",
                id="cancel"),
        Binding("ctrl+r", "rerun", "Run", tooltip="Run the question again with the current methods and passages.", id="run"),
        # The app owns the QA file and the help: its actions, named by namespace, so the screen needs no app import.
        Binding("ctrl+o", "app.browse_questions", "Questions", tooltip="Pick a question from the QA file.", id="browse-questions"),
        Binding("ctrl+t", "next_view", "View", tooltip="Answers → LoRA norms → conflict.", id="next-view"),
        Binding("ctrl+s", "export", "Export", tooltip="Write the comparison to Markdown and JSON.", id="export"),
        # One key, two bindings: check_action shows the one that applies, so the footer reads the current mode.
        Binding("ctrl+g", "set_rerank('dynamic')", "Rerank off",
                tooltip="Switch dynamic reranking on: the model picks which BM25 candidates every method gets.", id="toggle-rerank"),
        Binding("ctrl+g", "set_rerank('none')", "Rerank on", tooltip="Switch dynamic reranking off: plain BM25 top-k.", id="toggle-rerank"),
        Binding("ctrl+y", "copy", "Copy", show=False, tooltip="Copy the focused answer, or all answers.", id="copy"),
        Binding("ctrl+l", "focus_question", "Question", show=False, id="focus-question"),
        Binding("f1,question_mark", "app.show_help", "Help", key_display="?", tooltip="Keys and what each view shows.", id="help"),
        *[Binding(str(i), f"toggle_method({i})", show=False) for i in range(1, len(METHODS) + 1)],
    ]

    running: reactive[bool] = reactive(False, bindings=True)
    """A run is in flight (enables Cancel in the footer)."""
    options: reactive[RunOptions] = reactive(RunOptions, bindings=True, init=False)
    """How the next question runs; the footer shows its rerank mode. Replaced, never mutated."""
    engine: reactive[Engine | None] = reactive(None, init=False, always_update=True)
    """The open engine, set by the app once (re-)opened; None until the first load finishes."""
    load: reactive[EngineLoad | None] = reactive(None, init=False, always_update=True)
    """The app's latest report on opening an engine (a step, or why it failed)."""
    labels: reactive[Labels] = reactive(lambda: Labels("SmolLM2-135M-Instruct", "sample corpus"), init=False)
    """Model and corpus names for the status line."""
    questions: reactive[QuestionBank] = reactive(QuestionBank, init=False)
    """The QA file's questions: a typed question that is one of them gets its gold answers."""

    def __init__(self, options: RunOptions, labels: Labels, export_dir: Path, history: Iterable[str] = (),
                 cursor_blink: bool = True, recipe: str | None = None) -> None:
        super().__init__()
        self.recipe = recipe
        """The engine's PRAG recipe (`--recipe`, the config file) when the options name none: an expanded
        passage lists the pairs its LoRA learns under it."""
        self.set_reactive(MainScreen.options, options)
        self.set_reactive(MainScreen.labels, labels)
        self.export_dir = export_dir
        """Where ctrl+s writes the Markdown and JSON exports."""
        self.history = list(history)
        """Earlier questions the question box starts with."""
        self.cursor_blink = cursor_blink
        """The question box's cursor blinks (tests and snapshots switch it off)."""
        self.run_id = 0
        """Id of the newest run; messages of older runs are ignored."""
        self.request: RunRequest | None = None
        """The newest run's request."""
        self.comparison: Comparison | None = None
        """The last finished (or cancelled) run, for export."""
        self.pending: tuple[str, QAItem | None] | None = None
        """A question asked before the engine was ready."""
        self._worker: Worker | None = None
        self._engine_lock = threading.Lock()
        """One run talks to the engine at a time: a cancelled run's thread may still be finishing its
        current token when the next question starts, and one question's rerank and answers belong together."""

    # --- layout ---------------------------------------------------------------------

    def compose(self):
        yield StatusLine()
        yield QuestionInput(
            self.history,
            placeholder="Ask a question and press enter (↑/↓ history, ctrl+o picks one from the QA file)",
            id="question",
        )
        yield MethodBar(id="methods")
        yield PassagePanel(id="passages-panel")
        with TabbedContent(id="views"):
            with TabPane("Answers", id="tab-answers"):
                yield GoldLine(id="gold")
                yield AnswerGrid(id="answers")
            with TabPane("LoRA norms", id="tab-norms"):
                yield NormsPanel(id="norms")
            with TabPane("Conflict", id="tab-conflict"):
                yield ConflictPanel(id="conflict")
        yield KeyFooter(compact=True)

    def on_mount(self) -> None:
        self.question_input.cursor_blink = self.cursor_blink
        self.method_bar.set_enabled(self.options.methods)
        self._reset_view()
        self.refresh_title()
        self.watch_load(self.load)
        self.question_input.focus()

    def refresh_title(self) -> None:
        """Model, corpus and questions in the status line."""
        engine = self.engine
        if engine is None:
            self.status.show_session(self.labels.model, None, None, len(self.questions))
        else:
            where = getattr(engine.loaded, "placement", None)
            model = f"{engine.loaded.model_id} ({where.device}, {where.dtype})" if where is not None else engine.loaded.model_id
            self.status.show_session(model, self.labels.corpus, _corpus_size(engine), len(self.questions))

    # --- state from the app -------------------------------------------------------------

    def watch_load(self, load: EngineLoad | None) -> None:
        if load is None or not self.is_mounted:
            return  # on_mount shows a report that came first
        if load.failed:
            self.status.set_progress(None, None)
            self.status.set_state(load.text, "error")
            return
        self.status.set_progress(load.done if load.done is not None else 0, load.total)
        self.status.set_state(load.text + ("" if self.pending is None else "; your question runs when ready"), "busy")

    def watch_engine(self, engine: Engine | None) -> None:
        """A (new) engine is open: answers of the previous one no longer apply."""
        if self.running:
            self.action_cancel()
            self._stop()
        self.run_id += 1  # late messages of a run on the old engine are dropped (`_reset_view` tells the grid)
        self.set_reactive(MainScreen.load, None)
        self.status.set_progress(None, None)
        self.refresh_title()
        self.status.set_state("Ready: type a question and press enter", "ok")
        self._reset_view()
        if self.pending is not None and engine is not None:
            question, item = self.pending
            self.pending = None
            self.ask(question, item)

    def watch_labels(self) -> None:
        self.refresh_title()

    def watch_questions(self) -> None:
        self.refresh_title()

    def watch_options(self, old: RunOptions, new: RunOptions) -> None:
        if new.methods != old.methods:
            self.method_bar.set_enabled(new.methods)  # no-op when the bar itself changed them
        if new.rerank != old.rerank:
            self._rerank_changed(new)
        if new.encode_missing != old.encode_missing:
            self._encode_changed(new.encode_missing)
        injection = (new.recipe, new.merge, new.order, new.layers, new.lora_span)
        if injection != (old.recipe, old.merge, old.order, old.layers, old.lora_span):
            self._injection_changed(new)

    def _injection_changed(self, options: RunOptions) -> None:
        """Recipe, merge, order and layers change what PRAG and the prompts see: the question on screen runs again."""
        question = self.passages_panel.question if self.engine is not None else None
        self.notify(options.injection_label() + ("; running the question again" if question else ""), title="Injection")
        if question:
            self.ask(question, self.passages_panel.item)

    def _rerank_changed(self, options: RunOptions) -> None:
        if options.rerank == "dynamic":
            count = candidate_count(options.top_k, options.candidates)
            text = f"On: the model picks, from the top {count} BM25 candidates, which passages every method gets."
        else:
            text = f"Off: runs use the BM25 top-{options.top_k} (or a QA question's own passages)."
        if self.passages_panel.question is not None:
            text += " ctrl+r runs the question again."
        self.notify(text, title="Dynamic rerank")

    def _encode_changed(self, on: bool) -> None:
        """Encoding decides whether PRAG answers at all, so the question on screen runs again at once."""
        text = ("on: missing PRAG LoRAs are trained before answering (slow, once per passage)" if on
                else "off: a missing PRAG LoRA is that answer's error")
        question = self.passages_panel.question if self.engine is not None else None
        self.notify(f"Encode missing PRAG LoRAs: {text}" + ("; running the question again" if question else ""), title="PRAG")
        if question:
            self.ask(question, self.passages_panel.item)

    # --- asking -----------------------------------------------------------------------

    @on(QuestionInput.Submitted, "#question")
    def _submitted(self, event: QuestionInput.Submitted) -> None:
        self.ask(event.value)

    def pick(self, item: QAItem) -> None:
        """Run a question chosen in the browser."""
        self.question_input.value = item.question
        self.question_input.cursor_position = len(item.question)
        self.ask(item.question, item)

    def ask(self, question: str, item: QAItem | None = None) -> None:
        """Run `question` with the switched-on methods (cancels a run in flight)."""
        question = question.strip()
        if not question:
            self.notify("Type a question first.", severity="warning")
            return
        self.question_input.remember(question)
        self.post_message(HistoryChanged(list(self.question_input.history)))
        item = item or self.questions.find(question)
        if self.engine is None:
            self.pending = (question, item)
            self.status.set_state("Queued: your question runs as soon as the model is ready", "busy")
            return
        options = self.options
        methods = tuple(m for m in METHODS.values() if m.name in options.methods)
        if not methods:
            self.notify("Every method is switched off: press 1-6 (outside the question box) or click one.", severity="warning")
            return
        self.passages_panel.passage_list.recipe = options.recipe or self.recipe
        hits, reranked = self.passages_panel.passages_for(question, item, options)
        probes = ProbeSet.for_item(item).candidates() if item is not None else ()
        ask = AskRequest(question, methods, options.top_k, options.max_new_tokens, options.rerank, options.candidates,
                         options.encode_missing, hits=hits, scores=probes, layers=options.layers, merge=options.merge,
                         order=options.order, lora_span=options.lora_span, recipe=options.recipe)
        self._start(RunRequest(self.run_id + 1, ask, item, reranked))

    def _start(self, request: RunRequest) -> None:
        self.request, self.run_id = request, request.run_id
        self.comparison = None
        self.grid.start_run(request.run_id, request.ask.methods)
        self._arrange()
        self.gold.show_item(request.item)
        self.conflict.show(request.item, [])
        self.norms.show([])
        self._set_conflict_tab(request.item)
        self.running = True
        ask = request.ask
        if ask.hits is None and ask.rerank == "dynamic":
            self.status.set_state(f"Reranking {candidate_count(ask.top_k, ask.candidates)} candidates… (esc cancels)", "busy")
        else:
            self.status.set_state(f"Generating {len(self.run_methods)} answers… (esc cancels)", "busy")
        self._worker = self._generate(self.engine, request)

    @work(thread=True, exclusive=True, group="generation", exit_on_error=False,
          description="Ask the engine: passages (retrieved, maybe reranked), PRAG encoding, every method's answer")
    def _generate(self, engine: Engine, request: RunRequest) -> None:
        worker = get_current_worker()
        with self._engine_lock:
            if worker.is_cancelled:
                return  # superseded while waiting for the previous run to wind down
            run_question(engine, request, self.grid.buffer, self.post_message, worker.cancelled_event)

    @on(PassagesRetrieved)
    def _passages_retrieved(self, message: PassagesRetrieved) -> None:
        if message.run_id != self.run_id or self.request is None:
            return
        if message.rerank is None:
            self.passages_panel.show_retrieved(message.hits, self.request.ask.top_k)
            return
        self.passages_panel.show_reranked(message.rerank)
        if self.running and not (self._worker is not None and self._worker.is_cancelled):
            self.status.set_state(f"Generating {len(self.run_methods)} answers… (esc cancels)", "busy")

    @on(ComparisonFinished)
    def _finished(self, message: ComparisonFinished) -> None:
        if message.run_id != self.run_id or self.request is None:
            return
        comparison = self.comparison = message.comparison
        item = self.request.item
        self.grid.finish_run(comparison.answers, item)
        self.norms.show(comparison.answers)
        self.conflict.show(item, comparison.answers)
        if item is not None:
            self.gold.show_item(item, self._lora_trained(item, comparison))
        self._stop()
        self.status.set_state(*outcome(comparison, self.request.ask.encode_missing))

    def _lora_trained(self, item: QAItem, comparison: Comparison) -> bool | None:
        """Whether the PRAG LoRAs of the passages PRAG got were trained on a gold answer (`prag eval --coverage`, one question)."""
        from engine.evaluate.coverage import lora_trained_on
        from engine.offline.recipes import recipe_config

        recipe = (self.request.ask.recipe if self.request else None) or self.recipe
        prag = [a for a in comparison.answers if a.method in ("prag", "prag_combine") and not a.error]
        if recipe is None or not prag or not comparison.hits:
            return None
        return lora_trained_on(item.answers, [hit.passage for hit in comparison.hits], recipe_config(recipe))

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
        self.grid.fail_run()
        self.status.set_state(f"{title}: {text}", "error")
        self.notify(text, title=title, severity="error", timeout=8)

    def _stop(self) -> None:
        self.running = False
        self.grid.stop()

    # --- actions ----------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel":
            return self.running
        if action == "set_rerank":
            return parameters[0] != self.options.rerank  # False hides the binding and lets the other ctrl+g one run
        return True

    def action_cancel(self) -> None:
        if self.running and self._worker is not None:
            self._worker.cancel()
            self.status.set_state("Cancelling…", "warning")

    def action_rerun(self) -> None:
        self.ask(self.question_input.value or self.passages_panel.question or "", None)

    def action_next_view(self) -> None:
        views = self.views
        views.active = VIEWS[(VIEWS.index(views.active) + 1) % len(VIEWS)] if views.active in VIEWS else VIEWS[0]

    def show_view(self, view: str) -> None:
        self.views.active = view

    def action_focus_question(self) -> None:
        self.question_input.focus()

    def action_set_rerank(self, mode: str) -> None:
        self.options = replace(self.options, rerank=mode)

    def toggle_rerank(self) -> None:
        """Switch dynamic reranking on or off for the next run."""
        self.action_set_rerank("none" if self.options.rerank == "dynamic" else "dynamic")

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
        if self.comparison is None or self.request is None:
            self.notify("Nothing to export yet: run a question first (and let it finish or cancel it).", severity="warning")
            return
        excluded = [h.passage.title or h.passage.id for h in self.passages.excluded_hits()] if self.passages_panel.hits else []
        self._write_export(self.comparison, self.request.item, excluded, self.export_dir)

    @work(thread=True, group="export", exit_on_error=False, description="Write the comparison to Markdown and JSON")
    def _write_export(self, comparison: Comparison, item: QAItem | None, excluded: list[str], folder: Path) -> None:
        try:
            md, js = export_comparison(comparison, item, folder, excluded)
        except OSError as error:
            self.app.call_from_thread(self.notify, f"Could not write to {folder}: {error.strerror}", title="Export failed",
                                      severity="error")
            return
        self.app.call_from_thread(self.notify, f"{md}\n{js.name}", title="Exported", timeout=8)

    # --- small reactions ----------------------------------------------------------------

    @on(MethodBar.Changed)
    def _methods_changed(self, event: MethodBar.Changed) -> None:
        self.options = replace(self.options, methods=event.enabled)
        self._arrange()

    @on(NormsPanel.ModuleChanged)
    def _module_changed(self, event: NormsPanel.ModuleChanged) -> None:
        for card in self.grid.cards:
            card.set_module(event.module)

    def _arrange(self) -> None:
        self.grid.arrange_cards(self.method_bar.enabled, [m.name for m in self.run_methods])

    def _set_conflict_tab(self, item: QAItem | None) -> None:
        tab = self.views.get_tab("tab-conflict")
        tab.label = "Conflict ⚑" if item is not None and item.conflict is not None else "Conflict"

    def _reset_view(self) -> None:
        """Forget the run on screen (e.g. after switching model or corpus)."""
        self.request, self.comparison = None, None
        self.grid.forget(self.run_id)
        self._arrange()
        self.passages_panel.reset()
        self.norms.show([])
        self.conflict.show(None, [])
        self.gold.show_item(None)

    # --- widgets and what they show -------------------------------------------------------

    @property
    def item(self) -> QAItem | None:
        """The QA record of the question whose passages are shown."""
        return self.passages_panel.item

    @property
    def run_methods(self) -> list[Method]:
        """Methods of the current run, in answer order."""
        return self.grid.run_methods

    @property
    def answers(self) -> list[Answer | None]:
        """Latest snapshot per run method."""
        return self.grid.answers

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
    def passages_panel(self) -> PassagePanel:
        return self.query_one("#passages-panel", PassagePanel)

    @property
    def passages(self) -> PassageList:
        return self.query_one("#passages", PassageList)

    @property
    def gold(self) -> GoldLine:
        return self.query_one("#gold", GoldLine)

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


def _corpus_size(engine: Engine) -> int | None:
    """Passages behind the retriever, when it can tell (a remote index may not)."""
    try:
        return len(engine.retriever)
    except (AttributeError, TypeError):
        return None
