"""One run of a question, between the main screen and the engine, free of widgets.

`run_question` is the body of the screen's generation worker. It hands the request to
`Engine.ask`, the engine's whole pipeline, with the worker's cancel event, so Esc stops
whichever stage is running: the reranker, the on-demand PRAG encoding or the generation.
The engine's events come back on the worker thread: the chosen passages become a
`PassagesRetrieved` message, each answer snapshot goes to the `StreamBuffer` (painted
by the screen's timer, coalesced), and the final comparison a `ComparisonFinished`.

`outcome` turns a finished comparison into the status line's one sentence.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from textual.message import Message

from engine.errors import PragError
from engine.explorer import PassagesChosen
from engine.methods import METHODS, AdapterSource
from tui.messages import ComparisonFinished, PassagesRetrieved, RunFailed
from tui.reranking import rerank_block
from tui.session import Engine, RunRequest, StreamBuffer

if TYPE_CHECKING:
    from engine.explorer import Comparison, PipelineEvent


def run_question(engine: Engine, request: RunRequest, buffer: StreamBuffer, post: Callable[[Message], object],
                 cancel: threading.Event) -> None:
    """Ask the engine and report through `post` and `buffer` (worker thread; never raises a PragError)."""
    put = partial(buffer.put, request.run_id)
    chosen: list[PassagesChosen] = []

    def on_event(event: PipelineEvent) -> None:
        if not isinstance(event, PassagesChosen):
            put(event)
            return
        chosen.append(event)
        if request.ask.hits is None:  # given passages are on screen already
            post(PassagesRetrieved(request.run_id, list(event.hits), event.rerank, event.seconds))

    try:
        comparison = engine.ask(request.ask, on_event, cancel)
    except PragError as error:
        post(RunFailed(request.run_id, error))
        return
    # The engine records its own rerank; the explorer's block adds each candidate's positions, and
    # records the earlier rerank a re-run of the same question re-used (the engine saw given passages).
    fresh = next((event for event in chosen if event.rerank is not None), None)
    if fresh is not None:
        comparison.extra["rerank"] = rerank_block(fresh.rerank, request.ask.candidates, fresh.seconds)
    elif request.reranked is not None:
        comparison.extra["rerank"] = rerank_block(request.reranked, request.ask.candidates, None)
    post(ComparisonFinished(request.run_id, comparison))


def outcome(comparison: Comparison, encode_missing: bool) -> tuple[str, str]:
    """(sentence, tone) for the status line once a run has ended: done, cancelled or partly failed."""
    statuses = [a.status for a in comparison.answers]
    failed = statuses.count("error")
    rerank_s = comparison.extra.get("rerank", {}).get("seconds")
    took = f"{comparison.wall_s:.2f} s" + ("" if rerank_s is None else f" (+ rerank {rerank_s:.2f} s)")
    if "cancelled" in statuses:
        return f"Cancelled after {took}: partial answers kept", "warning"
    if failed:
        prag_failed = any(a.status == "error" and METHODS[a.method].adapter is AdapterSource.PRAG for a in comparison.answers)
        hint = " · ctrl+p: encode PRAG LoRAs" if prag_failed and not encode_missing else ""
        return f"Done in {took} · {failed}/{len(statuses)} failed{hint}", "warning"
    return f"Done in {took}", "ok"
