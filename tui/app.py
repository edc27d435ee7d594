"""`PragApp`: the Textual explorer around one `engine.explorer.Explorer`.

The app owns what outlives a question: settings, the engine (opened in a thread
worker with visible progress, so the first frame appears at once and the user can
type meanwhile), the QA file behind the questions browser, the question history and
the command palette. The main screen owns the runs.

The dependency is one-way: the app builds the main screen with its state (`tui.state`:
run options, labels, history) and hands it the engine, load progress and questions by
setting the screen's reactives; the screen never imports the app, and what the app
must keep (the history) comes back as a message.

Errors: a `PragError` while starting (bad model, corpus, QA file) ends the app with
exit code 2 and one line (`startup_error`, printed by `prag tui`); later ones, such as
switching to a broken model, become notifications and the old engine stays.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import App, SystemCommand
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from engine.config import Settings, load_settings
from engine.corpus import sample_questions_path
from engine.errors import PragError
from engine.methods import DEFAULT_LORA_SPAN, DEFAULT_MERGE, LORA_SPANS, MERGES, METHODS, ORDERS
from engine.offline.recipes import RECIPES
from engine.progress import Progress
from engine.rerank import check_mode
from tui.export import default_export_dir
from tui.messages import EngineFailed, EngineOpened, EngineProgressed, HistoryChanged, QuestionsLoaded
from tui.reranking import candidate_count
from tui.screens.dialogs import HelpScreen, PathPrompt
from tui.screens.main import MainScreen
from tui.screens.questions import QuestionBrowser
from tui.session import Engine, EngineFactory, open_explorer
from tui.state import EngineLoad, Labels, QuestionBank, RunOptions

if TYPE_CHECKING:
    from engine.qa import QAItem

HISTORY_FILE = "tui-history.txt"
"""Question history, one per line, under PRAG_HOME."""


class PragApp(App[None]):
    """Compare vanilla, RAG, PRAG and DyPRAG answers to one question, side by side."""

    CSS_PATH = "app.tcss"
    TITLE = "prag-explorer"

    def __init__(
        self,
        settings: Settings | None = None,
        data: Path | None = None,
        engine_factory: EngineFactory | None = None,
        encode_missing: bool = True,
        export_dir: Path | None = None,
        cursor_blink: bool = True,
        remember_history: bool = True,
        rerank: str = "none",
        candidates: int = 10,
        merge: str = DEFAULT_MERGE,
        order: str = "best-last",
        layers: tuple[int, int] | None = None,
        lora_span: str = DEFAULT_LORA_SPAN,
    ) -> None:
        super().__init__()
        self.settings = settings or load_settings()
        """Model, corpus, translator, top-k, new tokens: what the engine is opened with."""
        self.data_path = Path(data) if data is not None else sample_questions_path()
        """QA JSON Lines file behind the questions browser."""
        self.engine_factory: EngineFactory = engine_factory or open_explorer
        """Builds the engine (tests inject a fake)."""
        self.start_options = RunOptions(
            top_k=self.settings.top_k,
            max_new_tokens=self.settings.max_new_tokens,
            rerank=check_mode(rerank),
            candidates=candidates,
            encode_missing=encode_missing,
            merge=merge,
            order=order,
            layers=layers,
            lora_span=lora_span,
        )
        """How questions run at first; the main screen holds the current options (palette and keys change them)."""
        self.export_dir = Path(export_dir) if export_dir is not None else default_export_dir(self.settings)
        """Where ctrl+s writes the Markdown and JSON exports."""
        self.cursor_blink = cursor_blink
        """Input cursors blink (tests and snapshots switch it off)."""
        self.remember_history = remember_history
        """Keep the question history in PRAG_HOME between sessions."""
        self.engine: Engine | None = None
        """The open engine; None until the first load finishes."""
        self.questions = QuestionBank()
        """Questions of the QA file (empty until loaded)."""
        self.history: list[str] = self._read_history()
        """Earlier questions, oldest first, as saved in PRAG_HOME (the question box owns the live list)."""
        self.load_id = 0
        """Id of the newest engine load; older loads that finish late are dropped."""
        self.startup_error: str | None = None
        """The one-line reason the app could not start (exit code 2)."""
        self._main: MainScreen

    def get_default_screen(self) -> Screen:
        self._main = MainScreen(self.start_options, self.labels, self.export_dir, self.history, self.cursor_blink,
                                self.settings.recipe)
        return self._main

    def on_mount(self) -> None:
        # After the first frame: the user sees the screen (and can type) while the model loads.
        self.call_after_refresh(self.start)

    def start(self) -> None:
        """Load the engine and the QA file in workers."""
        self.open_engine(self.settings)
        self._load_questions(self.data_path)

    @property
    def main(self) -> MainScreen:
        """The explorer screen (always at the bottom of the stack)."""
        return self._main

    @property
    def options(self) -> RunOptions:
        """How the next question runs (the main screen's)."""
        return self.main.options

    @property
    def qa_items(self) -> list[QAItem]:
        return self.questions.items

    # --- labels -------------------------------------------------------------------------

    @property
    def labels(self) -> Labels:
        """Model and corpus names of the current settings, for the status line."""
        model = Path(self.settings.model).name if self.settings.model else "SmolLM2-135M-Instruct"
        return Labels(model, self.settings.corpus.name if self.settings.corpus else "sample corpus")

    # --- engine ---------------------------------------------------------------------------

    def open_engine(self, settings: Settings) -> None:
        """Open (or re-open with new settings) the engine in a thread worker."""
        self.load_id += 1
        self.main.load = EngineLoad(f"Opening {Path(settings.model).name if settings.model else 'the embedded model'}…")
        self._open_engine(settings, self.load_id)

    @work(thread=True, exclusive=True, group="engine", exit_on_error=False, description="Open the model, corpus and translator")
    def _open_engine(self, settings: Settings, load_id: int) -> None:
        def progress(event: Progress) -> None:
            self.post_message(EngineProgressed(load_id, event))

        try:
            engine = self.engine_factory(settings, progress)
        except PragError as error:
            self.post_message(EngineFailed(load_id, error))
            return
        self.post_message(EngineOpened(load_id, engine, settings))

    @on(EngineProgressed)
    def _engine_progressed(self, message: EngineProgressed) -> None:
        if message.load_id == self.load_id:
            p = message.progress
            self.main.load = EngineLoad(f"{p.label} {p.done}/{p.total}" if p.total else p.label, p.done, p.total)

    @on(EngineOpened)
    def _engine_opened(self, message: EngineOpened) -> None:
        if message.load_id != self.load_id:
            return
        first = self.engine is None
        self.engine = message.engine
        self.settings = message.settings
        self.main.labels = self.labels
        self.main.engine = self.engine
        if not first:
            self.notify(f"{self.engine.loaded.model_id} on {self.labels.corpus}", title="Engine ready")

    @on(EngineFailed)
    def _engine_failed(self, message: EngineFailed) -> None:
        if message.load_id == self.load_id:
            self._engine_error(message.error.title, message.error.one_line())

    def _engine_error(self, title: str, text: str) -> None:
        if self.engine is None:
            self.fail_startup(text)
            return
        self.main.load = EngineLoad(f"{title}: {text}; still using {self.engine.loaded.model_id}", failed=True)
        self.notify(text, title=title, severity="error", timeout=10)

    def fail_startup(self, text: str) -> None:
        """Leave with exit code 2; `prag tui` prints `text` as one line."""
        self.startup_error = text
        self.exit(return_code=2)

    @on(Worker.StateChanged)
    def _worker_changed(self, event: Worker.StateChanged) -> None:
        # Unexpected exceptions in app-level workers: fatal before the engine exists, a toast after.
        if event.state != WorkerState.ERROR or event.worker.group not in ("engine", "questions"):
            return
        error = event.worker.error
        text = f"{type(error).__name__}: {error}"
        if event.worker.group == "questions":
            self.fail_startup(f"could not read {self.data_path}: {text}")
        else:
            self._engine_error("Engine failed", text)

    # --- questions ------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="questions", exit_on_error=False, description="Read the QA file")
    def _load_questions(self, path: Path) -> None:
        from engine.qa import load_qa

        try:
            items = load_qa(path)
        except PragError as error:
            self.call_from_thread(self.fail_startup, error.one_line())
            return
        self.post_message(QuestionsLoaded(items))

    @on(QuestionsLoaded)
    def _questions_loaded(self, message: QuestionsLoaded) -> None:
        self.questions = QuestionBank(message.items)
        self.main.questions = self.questions

    def find_item(self, question: str) -> QAItem | None:
        """The QA record whose question is this one (ignoring case and spacing), if any."""
        return self.questions.find(question)

    def action_browse_questions(self) -> None:
        if not self.qa_items:
            self.notify(f"No questions loaded from {self.data_path.name} (yet).", severity="warning")
            return

        def picked(item: QAItem | None) -> None:
            if item is not None:
                self.main.pick(item)

        self.push_screen(QuestionBrowser(self.qa_items, self.data_path.name), picked)

    # --- history ----------------------------------------------------------------------------

    def _history_path(self) -> Path:
        return self.settings.home / HISTORY_FILE

    def _read_history(self) -> list[str]:
        if not self.remember_history:
            return []
        try:
            return [line for line in self._history_path().read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError):
            return []

    @on(HistoryChanged)
    def _history_changed(self, message: HistoryChanged) -> None:
        self.save_history(message.history)

    def save_history(self, history: list[str]) -> None:
        """Keep the question box's history for the next session."""
        self.history = list(history)
        if not self.remember_history:
            return
        try:
            path = self._history_path()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(history) + "\n", encoding="utf-8")
        except OSError:
            pass  # history is a convenience; a read-only home must not break asking

    # --- other actions ----------------------------------------------------------------------

    def action_show_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def switch(self, what: str) -> None:
        """Ask for a new model, corpus or translator path and re-open the engine."""
        current = getattr(self.settings, what)
        hints = {
            "model": "a local Hugging Face model directory, or 'default' for the embedded SmolLM2",
            "corpus": "a corpus JSONL file or a folder of .txt files, or 'default' for the sample corpus",
            "translator": "a DyPRAG translator (.safetensors or reference .pt), or 'default'",
        }

        def chosen(value: str | None) -> None:
            if value is None:
                return
            new: str | Path | None = None
            if value.lower() != "default":
                path = Path(value).expanduser()
                if not path.exists():
                    self.notify(f"{path} does not exist", title=f"Switch {what}", severity="error")
                    return
                new = str(path) if what == "model" else path
            self.main.action_cancel()
            self.open_engine(replace(self.settings, **{what: new}))

        self.push_screen(PathPrompt(f"Switch {what}", hints[what], str(current) if current else ""), chosen)

    def toggle_encode(self) -> None:
        """Encode missing PRAG LoRAs or not; the main screen says so and runs its question again."""
        self.main.options = replace(self.options, encode_missing=not self.options.encode_missing)

    def cycle(self, what: str, choices: Sequence[str]) -> None:
        """The next value of an injection option (recipe, merge, order, LoRA span); the screen runs its question again."""
        current = getattr(self.options, what) or (self.settings.recipe if what == "recipe" else None)
        following = choices[(list(choices).index(current) + 1) % len(choices)] if current in choices else choices[0]
        self.main.options = replace(self.options, **{what: following})

    def choose_layers(self) -> None:
        """Ask for a layer range A-B ('all' for every layer) for PRAG/DyPRAG injection."""
        from engine.methods import parse_layers

        engine = self.main.engine
        count = engine.loaded.arch.num_layers if engine is not None else None
        current = self.options.layers

        def chosen(value: str | None) -> None:
            if value is None:
                return
            try:
                layers = parse_layers(value, count)
            except PragError as exc:
                self.notify(str(exc), title="Layers", severity="error")
                return
            self.main.options = replace(self.options, layers=layers)

        hint = f"A-B, 0-based and inclusive{f' (0-{count - 1})' if count else ''}, or 'all'"
        self.push_screen(PathPrompt("Inject LoRAs into layers", hint, f"{current[0]}-{current[1]}" if current else "all"), chosen)

    def toggle_item_passages(self) -> None:
        self.main.options = replace(self.options, use_item_passages=not self.options.use_item_passages)
        where = "the passages that come with the question" if self.options.use_item_passages else "BM25 retrieval from the corpus"
        self.notify(f"Questions from the QA file now use {where}.", title="Passages")

    # --- command palette ----------------------------------------------------------------------

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        main = self.main
        yield SystemCommand("Browse questions", "Pick a question from the QA file (ctrl+o)", self.action_browse_questions)
        yield SystemCommand("Export comparison", "Markdown and JSON of the current run (ctrl+s)", main.action_export)
        yield SystemCommand("Switch model", "Re-open with another local model directory", lambda: self.switch("model"))
        yield SystemCommand("Switch corpus", "Re-open with another corpus JSONL or .txt folder", lambda: self.switch("corpus"))
        yield SystemCommand("Switch translator", "Re-open with another DyPRAG translator", lambda: self.switch("translator"))
        for method in METHODS.values():
            state = "on" if method.name in main.options.methods else "off"
            yield SystemCommand(f"Toggle method: {method.label} ({state})", method.help, partial(main.toggle_method, method.name))
        yield SystemCommand("Copy answers", "The focused answer, or all answers, to the clipboard (ctrl+y; c on an answer)",
                            main.action_copy)
        yield SystemCommand("Show answers", "The answers side by side", lambda: main.show_view("tab-answers"))
        yield SystemCommand("Show LoRA norms", "Per-layer norms of the injected adapters", lambda: main.show_view("tab-norms"))
        yield SystemCommand("Show knowledge conflict", "Which answers follow the passage, which the memory",
                            lambda: main.show_view("tab-conflict"))
        options = main.options
        yield SystemCommand(
            f"Dynamic rerank ({'on' if options.rerank == 'dynamic' else 'off'})",
            f"The model picks which of the top {candidate_count(options.top_k, options.candidates)} BM25 candidates "
            "every method gets (ctrl+g)",
            main.toggle_rerank,
        )
        yield SystemCommand(
            f"Encode missing PRAG LoRAs ({'on' if options.encode_missing else 'off'})",
            "Train missing per-passage LoRAs before answering (slow, once per passage); runs the question again",
            self.toggle_encode,
        )
        yield SystemCommand(
            f"QA questions use their own passages ({'on' if options.use_item_passages else 'off'})",
            "Off: retrieve from the corpus with BM25 instead", self.toggle_item_passages,
        )
        yield SystemCommand(f"PRAG recipe: {options.recipe or self.settings.recipe}", "Switch the encode recipe whose LoRAs PRAG reads "
                            "(facts: stores a passage's facts; reference: the papers'); runs the question again",
                            partial(self.cycle, "recipe", tuple(RECIPES)))
        yield SystemCommand(f"PRAG merge: {options.merge}", "How the passages' LoRAs combine: sum (the papers'), mean, "
                            "weighted by retrieval score; runs the question again", partial(self.cycle, "merge", MERGES))
        yield SystemCommand(f"Passage order: {options.order}", "best-last (nearest the question) or best-first (the papers'); "
                            "runs the question again", partial(self.cycle, "order", ORDERS))
        yield SystemCommand(f"Combine LoRA span: {options.lora_span}", "question (the LoRA acts from the question on; the "
                            "model reads the passages as it is) or all (every token, the papers'); runs the question again",
                            partial(self.cycle, "lora_span", LORA_SPANS))
        layers = "all" if options.layers is None else f"{options.layers[0]}-{options.layers[1]}"
        yield SystemCommand(f"LoRA layers: {layers}", "Inject PRAG/DyPRAG only into a range of decoder layers: where the "
                            "knowledge acts", self.choose_layers)
        yield SystemCommand("Help", "Keys and views (f1 or ?)", self.action_show_help)

