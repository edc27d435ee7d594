"""One question, several methods, one batched generation: the engine's main entry point.

`Explorer` owns the loaded model, the retriever, the PRAG LoRA store, the DyPRAG
translator and a passage-embedding cache. `compare` prepares each method's
adapter (a missing artifact becomes that answer's error, never a crash and never
a silent fallback), then runs every runnable method as one row of one batch and
streams tokens to a callback. UI code calls it from a worker thread and cancels
through a `threading.Event`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Sequence

from engine.adapters import Adapter, check_adapter, merge_mean, merge_sum
from engine.config import Settings
from engine.corpus import Passage, load_corpus
from engine.errors import ArtifactError, InputError, PragError
from engine.methods import METHODS, AdapterSource, Method, PromptKind
from engine.models import DEFAULT_MODEL_ID, LoadedModel, load_model
from engine.progress import Progress, ProgressCallback, report
from engine.prompts import clean_answer, generation_prompt
from engine.retrieval import BM25Retriever, Hit, Retriever
from engine.store import LoraStore

if TYPE_CHECKING:
    from engine.rerank import LLMReranker, RerankResult
    from engine.translator import ParameterTranslator

MAX_QUESTION_CHARS = 2000
Status = Literal["waiting", "preparing", "encoding", "generating", "done", "cancelled", "error"]

PassageEncoder = Callable[["Explorer", Sequence[Passage], ProgressCallback | None, threading.Event | None], None]
"""Fills the LoRA store for passages that have no PRAG LoRA yet (provided by engine.offline.encode)."""


@dataclass
class Answer:
    method: str
    label: str
    text: str = ""
    tokens: int = 0
    latency_s: float = 0.0
    error: str | None = None
    norms: list[dict[str, float | int]] | None = None
    status: Status = "waiting"
    detail: str = ""
    """Status detail, e.g. "encoding PRAG LoRA 2/3"."""

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "text": self.text,
            "tokens": self.tokens,
            "latency_s": round(self.latency_s, 4),
            "error": self.error,
            "norms": self.norms,
            "status": self.status,
        }


@dataclass(frozen=True)
class AnswerUpdate:
    """One method's answer changed (status or new text); `answer` is a snapshot."""

    index: int
    answer: Answer
    delta: str = ""


UpdateCallback = Callable[[AnswerUpdate], None]


@dataclass
class Comparison:
    question: str
    model: str
    hits: list[Hit]
    answers: list[Answer]
    wall_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def answer(self, method: str) -> Answer:
        return next(a for a in self.answers if a.method == method)

    def to_json(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "model": self.model,
            "passages": [
                {"id": h.passage.id, "title": h.passage.title, "text": h.passage.text, "score": round(h.score, 4)} for h in self.hits
            ],
            "answers": [a.to_json() for a in self.answers],
            **self.extra,
        }


def validate_question(question: str) -> str:
    if not isinstance(question, str) or not question.strip():
        raise InputError("the question is empty", "type a question, e.g. prag ask \"Who founded Velmora?\"")
    if len(question) > MAX_QUESTION_CHARS:
        raise InputError(f"the question has {len(question)} characters; the limit is {MAX_QUESTION_CHARS}", "ask a shorter question")
    return question.strip()


def default_translator_path(model_id: str) -> Path | None:
    """The translator shipped in assets/ for the embedded model, if there is one."""
    if model_id != DEFAULT_MODEL_ID:
        return None
    path = Path(__file__).resolve().parent.parent / "assets" / "translator-smollm2-135m-instruct.safetensors"
    return path if path.is_file() else None


class Explorer:
    def __init__(
        self,
        loaded: LoadedModel,
        retriever: Retriever,
        store: LoraStore,
        translator: "ParameterTranslator | None" = None,
        translator_note: str = "",
    ) -> None:
        from engine.translator import EmbeddingCache

        self.loaded = loaded
        self.retriever = retriever
        self.store = store
        self.translator = translator
        self.translator_note = translator_note
        """Why there is no translator, shown in DyPRAG answer slots."""
        self.embeddings = EmbeddingCache(loaded)
        self.reranker: "LLMReranker | None" = None
        """Dynamic reranker; created on first use with the answering model unless set."""
        self.encoder: PassageEncoder | None = None
        """Set by engine.offline.encode to encode missing PRAG LoRAs on demand."""
        self.model_lock = threading.RLock()
        """Held by anything that runs the model (generation, embeddings, reranking, encoding): hooks are per model."""

    # --- construction -------------------------------------------------------------

    @classmethod
    def open(cls, settings: Settings, progress: ProgressCallback | None = None, passages: Sequence[Passage] | None = None) -> "Explorer":
        from engine.retrieval.index import open_configured_index

        # A built index (settings.index / es_index) replaces BM25 over the corpus; opened first, to fail before the model.
        index = open_configured_index(settings) if passages is None else None
        corpus = None if index is not None else list(passages) if passages is not None else load_corpus(settings.corpus)
        loaded = load_model(settings.model, settings.models_dir, progress)
        if index is not None:
            retriever: Retriever = index
        else:
            report(progress, "Indexing corpus", 0, 1)
            retriever = BM25Retriever(corpus)
            report(progress, "Indexing corpus", 1, 1)
        translator, note = cls._load_translator(settings.translator, loaded)
        explorer = cls(loaded, retriever, LoraStore(settings.store_dir, loaded.model_id), translator, note)
        try:
            from engine.offline.encode import attach_encoder
        except ImportError:  # the offline stages are optional for answering
            pass
        else:
            attach_encoder(explorer)
        return explorer

    @staticmethod
    def _load_translator(path: Path | None, loaded: LoadedModel) -> "tuple[ParameterTranslator | None, str]":
        from engine.translator import load_translator

        if path is not None:
            return load_translator(path, loaded.arch), ""
        shipped = default_translator_path(loaded.model_id)
        if shipped is None:
            return None, f"no translator for {loaded.model_id}"
        return load_translator(shipped, loaded.arch), ""

    # --- retrieval ----------------------------------------------------------------

    def retrieve(self, question: str, top_k: int = 3) -> list[Hit]:
        return self.retriever.search(validate_question(question), top_k)

    def select(self, question: str, top_k: int = 3, rerank: str = "none", candidates: int = 10,
               cancel: threading.Event | None = None) -> "tuple[list[Hit], RerankResult | None]":
        """Retrieve, then (with rerank="dynamic") let the reranker choose which passages every method gets."""
        from engine.rerank import check_mode

        if check_mode(rerank) == "none":
            return self.retrieve(question, top_k), None
        if candidates < 1:
            raise InputError(f"--candidates must be at least 1, got {candidates}", "pass 1 or more")
        return self.rerank_hits(question, self.retrieve(question, max(candidates, top_k)), top_k, cancel)

    def rerank_hits(self, question: str, pool: Sequence[Hit], top_k: int = 3,
                    cancel: threading.Event | None = None) -> "tuple[list[Hit], RerankResult]":
        """Let the reranker choose among given candidates (e.g. a QA row's own passages)."""
        from engine.rerank import LLMReranker

        if self.reranker is None:
            self.reranker = LLMReranker(self.loaded)
        with self.model_lock:
            result = self.reranker.rerank(question, list(pool), top_k, cancel)
        return result.kept, result

    # --- adapters -----------------------------------------------------------------

    def prag_adapter(self, passages: Sequence[Passage], on_progress: ProgressCallback | None = None,
                     cancel: threading.Event | None = None, encode_missing: bool = False) -> Adapter:
        """Stored LoRAs of the passages, summed; missing ones encoded first when allowed."""
        missing = [p for p in passages if not self.store.has(p)]
        if missing and encode_missing and self.encoder is not None:
            self.encoder(self, missing, on_progress, cancel)
            missing = [p for p in passages if not self.store.has(p)]
        if missing:
            raise ArtifactError(
                f"no PRAG LoRA for {len(missing)} of {len(passages)} passages",
                "run `prag encode` on this corpus, or ask with --encode",
            )
        adapters = [self.store.get(p) for p in passages]
        merged = merge_sum([a for a in adapters if a is not None])
        check_adapter(merged, self.loaded.arch, "PRAG LoRA")
        return merged

    def dyprag_adapter(self, passages: Sequence[Passage]) -> Adapter:
        """Translator LoRA per passage, element-wise mean (unscaled, as the reference)."""
        import torch

        if self.translator is None:
            raise ArtifactError(self.translator_note or "no translator loaded", "run `prag train` or pass --translator PATH")
        with torch.no_grad():
            generated = self.translator.adapters(self.embeddings(passages))
        return merge_mean(generated)

    # --- the comparison ---------------------------------------------------------------

    def compare(
        self,
        question: str,
        hits: Sequence[Hit],
        methods: Sequence[Method] = tuple(METHODS.values()),
        max_new_tokens: int = 32,
        on_update: UpdateCallback | None = None,
        cancel: threading.Event | None = None,
        encode_missing: bool = False,
        ignore_eos: bool = False,
    ) -> Comparison:
        from engine.generate import generate_rows

        question = validate_question(question)
        if max_new_tokens < 1:
            raise InputError(f"max-new-tokens must be at least 1, got {max_new_tokens}", "pass a positive number")
        start = time.perf_counter()
        answers = [Answer(m.name, m.label) for m in methods]
        passages = [h.passage for h in hits]

        def emit(index: int, delta: str = "", **changes: Any) -> None:
            for key, value in changes.items():
                setattr(answers[index], key, value)
            if on_update is not None:
                on_update(AnswerUpdate(index, replace(answers[index]), delta))

        # One comparison at a time per model: preparing adapters (embeddings, encoding) and generating
        # all run the model, and another thread's hooks must never see those forward passes.
        with self.model_lock:
            prepared: dict[AdapterSource, Adapter | PragError] = {}
            prep_time: dict[AdapterSource, float] = {}
            rows: list[int] = []
            row_adapters: list[Adapter | None] = []
            for index, method in enumerate(methods):
                if cancel is not None and cancel.is_set():
                    break
                adapter: Adapter | None = None
                if method.adapter is not AdapterSource.NONE:
                    if method.adapter not in prepared:
                        emit(index, status="preparing")
                        t0 = time.perf_counter()
                        prepared[method.adapter] = self._prepare(method.adapter, passages, index, emit, cancel, encode_missing)
                        prep_time[method.adapter] = time.perf_counter() - t0
                    result = prepared[method.adapter]
                    if isinstance(result, PragError):
                        emit(index, status="error", error=result.one_line())
                        continue
                    adapter = result
                    answers[index].norms = adapter.layer_norms(self.loaded.arch.num_layers)
                rows.append(index)
                row_adapters.append(adapter)

            prompts = {
                kind: generation_prompt(self.loaded.tokenizer, question, passages if kind is PromptKind.PASSAGES else ())
                for kind in PromptKind
            }
            if rows and not (cancel is not None and cancel.is_set()):
                for index in rows:
                    emit(index, status="generating")

                def on_token(row: int, delta: str, result) -> None:
                    index = rows[row]
                    emit(index, delta, text=result.text, tokens=len(result.token_ids))

                results = generate_rows(
                    self.loaded.model, self.loaded.tokenizer, [prompts[methods[i].prompt] for i in rows], row_adapters,
                    max_new_tokens, on_token, cancel, stop_at_newline=not ignore_eos, ignore_eos=ignore_eos,
                )
                cancelled = cancel is not None and cancel.is_set()
                for index, result in zip(rows, results):
                    extra = prep_time.get(methods[index].adapter, 0.0)
                    status: Status = "cancelled" if cancelled and not result.finished else "done"
                    emit(index, text=clean_answer(result.text), tokens=len(result.token_ids), latency_s=result.latency_s + extra, status=status)
            for index, answer in enumerate(answers):
                if answer.status not in ("done", "error"):
                    emit(index, status="cancelled")
        return Comparison(question, self.loaded.model_id, list(hits), answers, time.perf_counter() - start)

    def _prepare(self, source: AdapterSource, passages: Sequence[Passage], index: int, emit, cancel, encode_missing) -> Adapter | PragError:
        if not passages:
            return InputError("no passage was retrieved, so there is nothing to inject", "rephrase the question or add passages")
        try:
            if source is AdapterSource.PRAG:
                def on_progress(p: Progress) -> None:
                    emit(index, status="encoding", detail=f"encoding PRAG LoRA {p.done}/{p.total}")

                return self.prag_adapter(passages, on_progress, cancel, encode_missing)
            return self.dyprag_adapter(passages)
        except PragError as exc:
            return exc

    def ask(self, question: str, methods: Sequence[Method] = tuple(METHODS.values()), top_k: int = 3, max_new_tokens: int = 32,
            on_update: UpdateCallback | None = None, cancel: threading.Event | None = None, encode_missing: bool = False,
            rerank: str = "none", candidates: int = 10) -> Comparison:
        hits, reranked = self.select(question, top_k, rerank, candidates, cancel)
        comparison = self.compare(question, hits, methods, max_new_tokens, on_update, cancel, encode_missing)
        if reranked is not None:
            comparison.extra["rerank"] = reranked.to_json()
        return comparison

