"""A deterministic, fast stand-in for `engine.explorer.Explorer` (layout snapshots and UI logic tests).

Same methods as the real one (`retrieve`, `select`, `compare` with streaming `on_update`
and a cancel event), real BM25 over the sample corpus, canned answers and per-layer norms,
and fixed latencies, so SVG snapshots are identical run after run.

The fake reranker (`select` with rerank="dynamic") keeps the BM25 top-k in reverse
order and drops every other candidate (always at least the last one), replying like
the real one ("[3] > [2] > [1]"); the reply goes through the engine's own parsing, so
a `rerank_reply` without usable identifiers falls back to BM25 order as the real one does.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import replace
from types import SimpleNamespace
from typing import Any, Callable, Sequence

from engine.corpus import load_corpus
from engine.errors import ArtifactError, InputError, PragError
from engine.explorer import Answer, AnswerUpdate, Comparison, UpdateCallback, validate_question
from engine.methods import AdapterSource, Method
from engine.models import MLP_MODULES
from engine.progress import report
from engine.rerank import RerankResult, apply_order, bm25_fallback, check_mode, parse_identifiers
from engine.retrieval import BM25Retriever, Hit

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


class FakeExplorer:
    def __init__(
        self,
        step_delay: float = 0.0,
        errors: dict[str, PragError] | None = None,
        fail_with: BaseException | None = None,
        gate: threading.Event | None = None,
        rerank_reply: str | None = None,
        select_gate: threading.Event | None = None,
    ) -> None:
        self.retriever = BM25Retriever(load_corpus(None))
        self.loaded = SimpleNamespace(model_id=MODEL_ID, arch=SimpleNamespace(num_layers=NUM_LAYERS))
        self.translator_note = ""
        self.step_delay = step_delay
        """Seconds between streamed words (0 for snapshots)."""
        self.errors = errors or {}
        """Method name -> the error its answer reports (like a missing LoRA)."""
        self.fail_with = fail_with
        """Raised by `compare` (PragError or an unexpected exception)."""
        self.gate = gate
        """When given, streaming waits on it after the first word, or (with encode_missing)
        while "encoding" the PRAG LoRAs (for mid-run tests)."""
        self.calls: list[dict[str, Any]] = []
        """What `compare` was asked, for assertions."""
        self.rerank_reply = rerank_reply
        """The fake reranker's reply; None = reverse the BM25 top-k (e.g. "[3] > [2] > [1]")."""
        self.select_gate = select_gate
        """When given, a dynamic `select` waits on it before answering (to see the reranking status)."""
        self.selects: list[dict[str, Any]] = []
        """What `select` was asked, for assertions."""

    def retrieve(self, question: str, top_k: int = 3) -> list[Hit]:
        return self.retriever.search(validate_question(question), top_k)

    def select(self, question: str, top_k: int = 3, rerank: str = "none", candidates: int = 10) -> tuple[list[Hit], RerankResult | None]:
        mode = check_mode(rerank)
        self.selects.append({"question": question, "top_k": top_k, "rerank": mode, "candidates": candidates})
        if mode == "none":
            return self.retrieve(question, top_k), None
        if candidates < 1:
            raise InputError(f"--candidates must be at least 1, got {candidates}", "pass 1 or more")
        pool = self.retrieve(question, max(candidates, top_k))
        if self.select_gate is not None:
            self.select_gate.wait(10)
        if not pool:
            return [], RerankResult([], [], "", False, "no candidates to rerank")
        keep = max(1, min(top_k, len(pool) - 1))
        raw = self.rerank_reply if self.rerank_reply is not None else " > ".join(f"[{n}]" for n in range(keep, 0, -1))
        order = parse_identifiers(raw, len(pool))
        if not order:
            result = bm25_fallback(pool, top_k, raw, "reranker answer had no usable identifiers; kept BM25 order")
        else:
            kept, dropped = apply_order(pool, order)
            result = RerankResult(kept, dropped, raw, False, f"reranker kept {len(kept)} of {len(pool)}", order)
        return result.kept, result

    def compare(
        self,
        question: str,
        hits: Sequence[Hit],
        methods: Sequence[Method],
        max_new_tokens: int = 32,
        on_update: UpdateCallback | None = None,
        cancel: threading.Event | None = None,
        encode_missing: bool = False,
        ignore_eos: bool = False,
    ) -> Comparison:
        question = validate_question(question)
        self.calls.append({"question": question, "hits": list(hits), "methods": [m.name for m in methods], "encode_missing": encode_missing})
        if self.fail_with is not None:
            raise self.fail_with
        answers = [Answer(m.name, m.label) for m in methods]
        canned = CANNED.get(question.lower(), DEFAULT_ANSWERS)

        def emit(index: int, delta: str = "", **changes: Any) -> None:
            for key, value in changes.items():
                setattr(answers[index], key, value)
            if on_update is not None:
                on_update(AnswerUpdate(index, replace(answers[index]), delta))

        rows: list[int] = []
        for index, method in enumerate(methods):
            if method.name in self.errors:
                emit(index, status="error", error=self.errors[method.name].one_line())
                continue
            if method.adapter is AdapterSource.PRAG and encode_missing and self.gate is not None and not any(
                methods[i].adapter is AdapterSource.PRAG for i in rows
            ):
                # like Explorer._prepare while engine.offline.encode trains missing LoRAs
                emit(index, status="encoding", detail="encoding PRAG LoRA 2/3")
                self.gate.wait(10)
            if method.adapter is not AdapterSource.NONE:
                if not hits:
                    emit(index, status="error", error=ArtifactError("no passage was retrieved, so there is nothing to inject").one_line())
                    continue
                answers[index].norms = fake_norms(method.adapter)
            rows.append(index)
        words = {i: canned[methods[i].name].split(" ")[:max_new_tokens] for i in rows}
        for index in rows:
            emit(index, status="generating")
        cancelled = False
        for step in range(max(map(len, words.values()), default=0)):
            if cancel is not None and cancel.is_set():
                cancelled = True
                break
            for index in rows:
                if step < len(words[index]):
                    delta = (" " if step else "") + words[index][step]
                    emit(index, delta, text=answers[index].text + delta, tokens=step + 1)
            if step == 0 and self.gate is not None and not encode_missing:
                self.gate.wait(10)
            if self.step_delay:
                time.sleep(self.step_delay)
        for rank, index in enumerate(rows):
            finished = not cancelled or len(words[index]) <= answers[index].tokens
            emit(index, latency_s=0.25 + 0.05 * rank, status="done" if finished else "cancelled")
        for index, answer in enumerate(answers):
            if answer.status not in ("done", "error", "cancelled"):
                emit(index, status="cancelled")
        return Comparison(question, MODEL_ID, list(hits), answers, wall_s=0.42)


def fake_factory(**options: Any) -> Callable:
    """An `EngineFactory` that reports one progress step and returns a `FakeExplorer`."""

    def factory(settings, progress) -> FakeExplorer:
        report(progress, "Loading fake model", 0, 1)
        engine = FakeExplorer(**options)
        report(progress, "Loading fake model", 1, 1)
        return engine

    return factory
