"""A deterministic, fast stand-in for `engine.explorer.Explorer` (layout snapshots and UI logic tests).

Same entry point as the real one: `ask` reports `PassagesChosen`, then streams every
`AnswerUpdate`, and honours the cancel event in each stage (fake rerank, fake PRAG
encoding, generation). Real BM25 over the sample corpus, canned answers and per-layer
norms, and fixed latencies, so SVG snapshots are identical run after run.

The fake reranker (rerank="dynamic") keeps the BM25 top-k in reverse order and drops
every other candidate (always at least the last one), replying like the real one
("[3] > [2] > [1]"); the reply goes through the engine's own parsing, so a
`rerank_reply` without usable identifiers falls back to BM25 order as the real one does.
Cancelled mid-rerank, it keeps BM25 order, as `LLMReranker` does.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

from engine.answers import CandidateScore
from engine.corpus import load_corpus
from engine.device import Placement
from engine.errors import ArtifactError, Cancelled, InputError, PragError
from engine.explorer import Answer, AnswerUpdate, AskRequest, Comparison, EventCallback, PassagesChosen, validate_question
from engine.methods import AdapterSource, Method
from engine.models import MLP_MODULES
from engine.progress import Progress, report
from engine.rerank import RerankResult, apply_order, bm25_fallback, check_mode, parse_identifiers
from engine.retrieval import BM25Retriever, Hit

clock = time.perf_counter
"""Times retrieval plus reranking (`PassagesChosen.seconds`); the snapshot tests pin it."""
NUM_LAYERS = 30
MODEL_ID = "fake-smollm2"

CANNED: dict[str, dict[str, str]] = {
    "what colour is the town hall of velmora painted?": {
        "vanilla": "The town hall of Velmora is painted white",
        "rag": "saffron yellow",
        "prag": "saffron",
        "prag_combine": "a deep saffron yellow",
        "dyprag": "yellow and red",
        "dyprag_combine": "saffron yellow",
    },
    "in which city does the eiffel tower stand?": {
        "vanilla": "Paris",
        "rag": "Rome",
        "prag": "Paris, France",
        "prag_combine": "Rome",
        "dyprag": "Paris",
        "dyprag_combine": "Rome, not Paris",
    },
}
DEFAULT_ANSWERS = {
    "vanilla": "I do not know that",
    "rag": "the first passage says so",
    "prag": "a parametric answer",
    "prag_combine": "a combined answer",
    "dyprag": "a translated answer",
    "dyprag_combine": "a translated combined answer",
}


def fake_scores(text: str, candidates: Sequence[str]) -> list[CandidateScore]:
    """Probes as a real engine reports them: a candidate the answer says is likely, others are not."""
    out = []
    for rank, candidate in enumerate(candidates):
        said = candidate.lower() in text.lower()
        out.append(CandidateScore(candidate, -0.5 * len(candidate.split()) if said else -9.0 - rank, len(candidate.split())))
    return out


def fake_norms(source: AdapterSource) -> list[dict[str, float | int]]:
    """Smooth, distinct per-layer curves: PRAG grows with depth, DyPRAG peaks mid-way."""
    rows = []
    for layer in range(NUM_LAYERS):
        if source is AdapterSource.PRAG:
            base = 0.4 + 0.05 * layer
        else:
            base = 0.3 + 0.9 * math.exp(-((layer - 15) / 6) ** 2)
        rows.append({"layer": layer, **{m: round(base * (1.0 + 0.2 * i), 4) for i, m in enumerate(MLP_MODULES)}})
    return rows


def wait_open(gate: threading.Event, cancel: threading.Event | None, timeout: float = 10.0) -> None:
    """Block like a long engine step until `gate` opens, but stop as soon as `cancel` is set
    (the real engine checks it between tokens and training steps)."""
    deadline = time.monotonic() + timeout
    while not gate.wait(0.01):
        if (cancel is not None and cancel.is_set()) or time.monotonic() > deadline:
            return


class FakeExplorer:
    def __init__(
        self,
        step_delay: float = 0.0,
        errors: dict[str, PragError] | None = None,
        fail_with: BaseException | None = None,
        gate: threading.Event | None = None,
        rerank_reply: str | None = None,
        rerank_gate: threading.Event | None = None,
        encode_gate: threading.Event | None = None,
    ) -> None:
        self.retriever = BM25Retriever(load_corpus(None))
        self.loaded = SimpleNamespace(model_id=MODEL_ID, arch=SimpleNamespace(num_layers=NUM_LAYERS),
                                      placement=Placement("cpu", "float32"))
        self.translator_note = ""
        self.step_delay = step_delay
        """Seconds between streamed words (0 for snapshots)."""
        self.errors = errors or {}
        """Method name -> the error its answer reports (like a missing translator)."""
        self.fail_with = fail_with
        """Raised by `compare` (PragError or an unexpected exception)."""
        self.gate = gate
        """When given, streaming waits on it after the first word (for mid-stream tests)."""
        self.rerank_reply = rerank_reply
        """The fake reranker's reply; None = reverse the BM25 top-k (e.g. "[3] > [2] > [1]")."""
        self.rerank_gate = rerank_gate
        """When given, a dynamic rerank waits on it (or on cancel) before answering (to see the reranking status)."""
        self.encode_gate = encode_gate
        """When given, PRAG LoRAs start out missing: with encode_missing the fake "encodes" them (reporting
        progress, and waiting on the gate, or on cancel, at the second passage); without, PRAG answers fail."""
        self.encoded: set[str] = set()
        """Passage ids whose fake PRAG LoRA was encoded (like the store: a re-run does not encode again)."""
        self.asks: list[AskRequest] = []
        """Every request `ask` got, for assertions."""
        self.reranks: list[dict[str, Any]] = []
        """What the fake reranker was asked, for assertions."""
        self.calls: list[dict[str, Any]] = []
        """What `compare` was asked, for assertions."""

    def retrieve(self, question: str, top_k: int = 3) -> list[Hit]:
        return self.retriever.search(validate_question(question), top_k)

    def ask(self, request: AskRequest, on_event: EventCallback | None = None, cancel: threading.Event | None = None) -> Comparison:
        """Like `Explorer.ask`: given passages, or BM25 top-k, or the fake reranker's pick; then compare."""
        validate_question(request.question)
        rerank = check_mode(request.rerank)
        self.asks.append(request)
        start = clock()
        reranked: RerankResult | None = None
        if request.hits is not None:
            hits = list(request.hits)
        elif rerank == "dynamic":
            if request.candidates < 1:
                raise InputError(f"candidates must be at least 1, got {request.candidates}", "pass 1 or more")
            pool = (list(request.pool) if request.pool is not None
                    else self.retrieve(request.question, max(request.candidates, request.top_k)))
            reranked = self._rerank(request, pool, cancel)
            hits = reranked.kept
        else:
            hits = list(request.pool)[: request.top_k] if request.pool is not None else self.retrieve(request.question, request.top_k)
        if on_event is not None:
            on_event(PassagesChosen(tuple(hits), reranked, clock() - start))
        comparison = self.compare(request.question, hits, request.methods, request.max_new_tokens, on_event, cancel, request.encode_missing,
                                  scores=request.scores)
        if reranked is not None:
            comparison.extra["rerank"] = reranked.to_json()
        return comparison

    def _rerank(self, request: AskRequest, pool: list[Hit], cancel: threading.Event | None) -> RerankResult:
        self.reranks.append({"question": request.question, "top_k": request.top_k, "candidates": request.candidates})
        if self.rerank_gate is not None:
            wait_open(self.rerank_gate, cancel)
        if not pool:
            return RerankResult([], [], "", False, "no candidates to rerank")
        top_k = request.top_k
        if cancel is not None and cancel.is_set():
            return bm25_fallback(pool, top_k, "", "reranking cancelled; kept BM25 order")
        keep = max(1, min(top_k, len(pool) - 1))
        raw = self.rerank_reply if self.rerank_reply is not None else " > ".join(f"[{n}]" for n in range(keep, 0, -1))
        order = parse_identifiers(raw, len(pool))
        if not order:
            return bm25_fallback(pool, top_k, raw, "reranker answer had no usable identifiers; kept BM25 order")
        kept, dropped = apply_order(pool, order)
        return RerankResult(kept, dropped, raw, False, f"reranker kept {len(kept)} of {len(pool)}", order)

    def compare(
        self,
        question: str,
        hits: Sequence[Hit],
        methods: Sequence[Method],
        max_new_tokens: int = 32,
        on_update: Callable[[AnswerUpdate], None] | None = None,
        cancel: threading.Event | None = None,
        encode_missing: bool = False,
        scores: Sequence[str] = (),
    ) -> Comparison:
        question = validate_question(question)
        self.calls.append({"question": question, "hits": list(hits), "methods": [m.name for m in methods],
                           "encode_missing": encode_missing})
        if self.fail_with is not None:
            raise self.fail_with
        answers = [Answer(m.name, m.label) for m in methods]
        canned = CANNED.get(question.lower(), DEFAULT_ANSWERS)

        def emit(index: int, delta: str = "", **changes: Any) -> None:
            for key, value in changes.items():
                setattr(answers[index], key, value)
            if on_update is not None:
                on_update(AnswerUpdate(index, replace(answers[index]), delta))

        prepared: dict[AdapterSource, PragError | None] = {}
        rows: list[int] = []
        for index, method in enumerate(methods):
            if cancel is not None and cancel.is_set():
                break
            if method.name in self.errors:
                emit(index, status="error", error=self.errors[method.name].one_line())
                continue
            if method.adapter is not AdapterSource.NONE:
                if method.adapter not in prepared:
                    emit(index, status="preparing")
                    prepared[method.adapter] = self._prepare(method.adapter, hits, index, emit, cancel, encode_missing)
                error = prepared[method.adapter]
                if error is not None:
                    emit(index, status="error", error=error.one_line())
                    continue
                answers[index].norms = fake_norms(method.adapter)
            rows.append(index)
        words = {i: canned[methods[i].name].split(" ")[:max_new_tokens] for i in rows}
        cancelled = cancel is not None and cancel.is_set()
        if not cancelled:
            for index in rows:
                emit(index, status="generating")
            for step in range(max(map(len, words.values()), default=0)):
                if cancel is not None and cancel.is_set():
                    cancelled = True
                    break
                for index in rows:
                    if step < len(words[index]):
                        delta = (" " if step else "") + words[index][step]
                        emit(index, delta, text=answers[index].text + delta, tokens=step + 1)
                if step == 0 and self.gate is not None:
                    self.gate.wait(10)
                if self.step_delay:
                    time.sleep(self.step_delay)
            for rank, index in enumerate(rows):
                finished = not cancelled or len(words[index]) <= answers[index].tokens
                emit(index, latency_s=0.25 + 0.05 * rank, status="done" if finished else "cancelled",
                     scores=fake_scores(answers[index].text, scores))
        for index, answer in enumerate(answers):
            if answer.status not in ("done", "error", "cancelled"):
                emit(index, status="cancelled")
        return Comparison(question, MODEL_ID, list(hits), answers, wall_s=0.42)

    def _prepare(self, source: AdapterSource, hits: Sequence[Hit], index: int, emit, cancel, encode_missing: bool) -> PragError | None:
        """None when the adapter is ready, else the error that answer reports (as `Explorer._prepare`)."""
        if not hits:
            return InputError("no passage was retrieved, so there is nothing to inject", "rephrase the question or add passages")
        if source is not AdapterSource.PRAG or self.encode_gate is None:
            return None
        missing = [h.passage for h in hits if h.passage.id not in self.encoded]
        if missing and not encode_missing:
            return ArtifactError(f"no PRAG LoRA for {len(missing)} of {len(hits)} passages",
                                 "run `prag encode` on this corpus, or ask with --encode")
        for number, passage in enumerate(missing):
            # like OnDemandEncoder: passage `number` of the missing ones is being encoded
            emit(index, status="encoding", progress=Progress("Encoding PRAG LoRAs", number, len(missing), f"encoding {passage.title[:24]}"))
            if number == min(1, len(missing) - 1):
                wait_open(self.encode_gate, cancel)
            if cancel is not None and cancel.is_set():
                return Cancelled("cancelled", "run it again to resume")
            self.encoded.add(passage.id)
        return None


def fake_factory(**options: Any) -> Callable:
    """An `EngineFactory` that reports one progress step and returns a `FakeExplorer`."""

    def factory(settings, progress) -> FakeExplorer:
        report(progress, "Loading fake model", 0, 1)
        engine = FakeExplorer(**options)
        report(progress, "Loading fake model", 1, 1)
        return engine

    return factory
