"""`PragApp`: the Textual explorer around one `engine.explorer.Explorer`.

The app owns what outlives a question: settings, the engine (opened in a thread
worker with visible progress, so the first frame appears at once and the user can
type meanwhile), the QA file behind the questions browser, the question history and
the command palette. The main screen owns the runs.

Errors: a `PragError` while starting (bad model, corpus, QA file) ends the app with
exit code 2 and one line (`startup_error`, printed by `prag tui`); later ones, such as
switching to a broken model, become notifications and the old engine stays.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from textual import on, work
from textual.app import App, SystemCommand
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from engine.config import Settings, load_settings
from engine.corpus import sample_questions_path
from engine.errors import PragError
from engine.methods import METHODS
from engine.progress import Progress
from engine.rerank import check_mode

from tui.export import default_export_dir
from tui.reranking import candidate_count
from tui.messages import EngineFailed, EngineOpened, EngineProgressed, QuestionsLoaded
from tui.screens.dialogs import HelpScreen, PathPrompt
from tui.screens.main import MainScreen
from tui.screens.questions import QuestionBrowser
from tui.session import Engine, EngineFactory, open_explorer

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
        encode_missing: bool = False,
        export_dir: Path | None = None,
        cursor_blink: bool = True,
        remember_history: bool = True,
        rerank: str = "none",
        candidates: int = 10,
    ) -> None:
        super().__init__()
        self.settings = settings or load_settings()
        """Model, corpus, translator, top-k, new tokens: what the engine is opened with."""
        self.data_path = Path(data) if data is not None else sample_questions_path()
        """QA JSON Lines file behind the questions browser."""
        self.engine_factory: EngineFactory = engine_factory or open_explorer
        """Builds the engine (tests inject a fake)."""
        self.encode_missing = encode_missing
        """Encode missing PRAG LoRAs on demand (slow) instead of reporting them."""
        self.use_item_passages = True
        """For questions from the QA file, use the passages that come with them rather than retrieving."""
        self.export_dir = Path(export_dir) if export_dir is not None else default_export_dir(self.settings)
        """Where ctrl+s writes the Markdown and JSON exports."""
        self.cursor_blink = cursor_blink
        """Input cursors blink (tests and snapshots switch it off)."""
        self.remember_history = remember_history
        """Keep the question history in PRAG_HOME between sessions."""
        self.start_rerank = check_mode(rerank)
        """Passage selection the explorer starts with: "none" or "dynamic" (ctrl+g switches it on the main screen)."""
        self.rerank_candidates = candidates
        """BM25 candidates the dynamic reranker chooses from (`prag tui --candidates`)."""
        self.engine: Engine | None = None
        """The open engine; None until the first load finishes."""
        self.qa_items: list["QAItem"] = []
        """Questions of the QA file (empty until loaded)."""
        self._by_question: dict[str, "QAItem"] = {}
        self.history: list[str] = self._read_history()
        """Earlier questions, oldest first, as saved in PRAG_HOME (the question box owns the live list)."""
        self.load_id = 0
        """Id of the newest engine load; older loads that finish late are dropped."""
        self.startup_error: str | None = None
        """The one-line reason the app could not start (exit code 2)."""
        self._main: MainScreen

    def get_default_screen(self) -> Screen:
        self._main = MainScreen(rerank=self.start_rerank)
        return self._main

    def start(self) -> None:
        """Called by the main screen once mounted: load the engine and the QA file in workers."""
        self.open_engine(self.settings)
        self._load_questions(self.data_path)

    @property
    def main(self) -> MainScreen:
        """The explorer screen (always at the bottom of the stack)."""
        return self._main

    # --- labels -------------------------------------------------------------------------

    @property
    def model_label(self) -> str:
        return Path(self.settings.model).name if self.settings.model else "SmolLM2-135M-Instruct"

    @property
    def corpus_label(self) -> str:
        return self.settings.corpus.name if self.settings.corpus else "sample corpus"

    # --- engine ---------------------------------------------------------------------------

    def open_engine(self, settings: Settings) -> None:
        """Open (or re-open with new settings) the engine in a thread worker."""
        self.load_id += 1
        self.main.engine_loading(f"Opening {Path(settings.model).name if settings.model else 'the embedded model'}…", None, None)
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
            self.main.engine_loading(f"{p.label} {p.done}/{p.total}" if p.total else p.label, p.done, p.total)

    @on(EngineOpened)
    def _engine_opened(self, message: EngineOpened) -> None:
        if message.load_id != self.load_id:
            return
        first = self.engine is None
        self.engine = message.engine
        self.settings = message.settings
        self.main.engine_ready()
        if not first:
            self.notify(f"{self.engine.loaded.model_id} on {self.corpus_label}", title="Engine ready")

    @on(EngineFailed)
    def _engine_failed(self, message: EngineFailed) -> None:
        if message.load_id == self.load_id:
            self._engine_error(message.error.title, message.error.one_line())

    def _engine_error(self, title: str, text: str) -> None:
        if self.engine is None:
            self.fail_startup(text)
            return
        self.main.engine_failed(f"{title}: {text}; still using {self.engine.loaded.model_id}")
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
        self.qa_items = message.items
        self._by_question = {}
        for item in message.items:
            self._by_question.setdefault(_question_key(item.question), item)
        self.main.refresh_title()

    def find_item(self, question: str) -> "QAItem | None":
        """The QA record whose question is this one (ignoring case and spacing), if any."""
        return self._by_question.get(_question_key(question))

    def action_browse_questions(self) -> None:
        if not self.qa_items:
            self.notify(f"No questions loaded from {self.data_path.name} (yet).", severity="warning")
            return

        def picked(item: "QAItem | None") -> None:
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

    def exported(self, markdown: Path, json_path: Path) -> None:
        self.notify(f"{markdown}\n{json_path.name}", title="Exported", timeout=8)

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
        self.encode_missing = not self.encode_missing
        state = "on: missing PRAG LoRAs are trained before answering (slow)" if self.encode_missing else "off"
        self.notify(f"Encode missing PRAG LoRAs: {state}", title="PRAG")

    def toggle_item_passages(self) -> None:
        self.use_item_passages = not self.use_item_passages
        where = "the passages that come with the question" if self.use_item_passages else "BM25 retrieval from the corpus"
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
            state = "on" if method.name in main.method_bar.enabled else "off"
            yield SystemCommand(f"Toggle method: {method.label} ({state})", method.help, partial(main.toggle_method, method.name))
        yield SystemCommand("Copy answers", "The focused answer, or all answers, to the clipboard (ctrl+y; c on an answer)", main.action_copy)
        yield SystemCommand("Show answers", "The answers side by side", lambda: main.show_view("tab-answers"))
        yield SystemCommand("Show LoRA norms", "Per-layer norms of the injected adapters", lambda: main.show_view("tab-norms"))
        yield SystemCommand("Show knowledge conflict", "Which answers follow the passage, which the memory", lambda: main.show_view("tab-conflict"))
        state = "on" if main.rerank == "dynamic" else "off"
        yield SystemCommand(
            f"Dynamic rerank ({state})",
            f"The model picks which of the top {candidate_count(self.settings.top_k, self.rerank_candidates)} BM25 candidates every method gets (ctrl+g)",
            main.toggle_rerank,
        )
        yield SystemCommand(
            f"Encode missing PRAG LoRAs ({'on' if self.encode_missing else 'off'})", "Train missing per-passage LoRAs before answering", self.toggle_encode
        )
        yield SystemCommand(
            f"QA questions use their own passages ({'on' if self.use_item_passages else 'off'})",
            "Off: retrieve from the corpus with BM25 instead", self.toggle_item_passages,
        )
        yield SystemCommand("Help", "Keys and views (f1 or ?)", self.action_show_help)


def _question_key(question: str) -> str:
    return " ".join(question.lower().split()).rstrip("?").strip()
