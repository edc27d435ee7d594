"""The app's side of the engine boundary, free of widgets.

- `Engine`: what the app needs from `engine.explorer.Explorer` (tests inject a fake).
- `EngineFactory` / `open_explorer`: how an engine is built from settings, reporting progress.
- `StreamBuffer`: the generating thread writes the latest answer snapshot per method here;
  the UI drains it a few times a second. A burst of tokens therefore costs one repaint,
  not one per token, and typing stays fluid while six answers stream.
- `RunRequest`: one click of "run", as plain data handed to the worker.

The whole question pipeline (retrieve or take the given passages, rerank, encode missing
PRAG LoRAs, generate) is the engine's `ask`, so the explorer answers a question exactly
as `prag ask` does, and one cancel event stops whichever stage is running.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from engine.config import Settings
from engine.progress import ProgressCallback

if TYPE_CHECKING:
    from engine.explorer import Answer, AnswerUpdate, AskRequest, Comparison, EventCallback
    from engine.qa import QAItem
    from engine.rerank import RerankResult


class Engine(Protocol):
    """The part of `Explorer` the app uses."""

    loaded: Any
    """Has `.model_id`, `.arch.num_layers` and `.placement` (device and dtype, shown in the header)."""
    retriever: Any
    """Its `len()`, when it has one, is the corpus size in the status line."""

    def ask(self, request: AskRequest, on_event: EventCallback | None = None,
            cancel: threading.Event | None = None) -> Comparison:
        """Passages (`PassagesChosen`, once), then every `AnswerUpdate`, to `on_event`; `cancel` stops any stage."""
        ...


EngineFactory = Callable[[Settings, ProgressCallback], Engine]
"""Builds an engine from settings; called in a worker thread, may raise PragError."""


def generation_threads(settings: Settings) -> int:
    """torch intra-op threads for the explorer: `settings.threads`, else every core but one.

    The UI thread needs a core of its own to stay responsive while six answers stream;
    and on a busy machine an oversubscribed OpenMP pool slows generation down by an
    order of magnitude (measured: 74 s instead of 1.1 s for a first comparison on 2 cores).
    """
    if settings.threads:
        return settings.threads
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 2
    return max(1, cores - 1)


def open_explorer(settings: Settings, progress: ProgressCallback) -> Engine:
    """The real engine (`engine.session.open_explorer`), with transformers' own bars and warnings silenced."""
    from engine.cli.common import quiet_libraries
    from engine.session import open_explorer as open_session

    quiet_libraries()
    import torch

    torch.set_num_threads(generation_threads(settings))
    return open_session(settings, progress)


class StreamBuffer:
    """Latest `Answer` snapshot per method index for the current run; thread-safe.

    `put` is called from the generating thread for every token; `drain` from the UI
    thread on a timer. Snapshots of an older run are dropped, so a cancelled run that
    is still winding down never paints over the new one.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._run_id = 0
        self._pending: dict[int, Answer] = {}

    def start(self, run_id: int) -> None:
        with self._lock:
            self._run_id = run_id
            self._pending = {}

    def put(self, run_id: int, update: AnswerUpdate) -> None:
        with self._lock:
            if run_id == self._run_id:
                self._pending[update.index] = update.answer

    def drain(self) -> dict[int, Answer]:
        with self._lock:
            pending, self._pending = self._pending, {}
        return pending


@dataclass(frozen=True)
class RunRequest:
    """Everything the generation worker needs; built on the UI thread."""

    run_id: int
    ask: AskRequest
    """The engine's request; `ask.hits` None = retrieve (and rerank, if on) first."""
    item: QAItem | None = None
    """The QA record of the question, for scores and the conflict view."""
    reranked: RerankResult | None = None
    """The earlier rerank that `ask.hits` came from (re-run of the same question), recorded in the comparison."""
