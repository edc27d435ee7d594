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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from engine.adapters import Adapter, check_adapter, keep_layers, merge_mean, merge_sum
from engine.answers import Answer, AnswerUpdate, CandidateScore, Comparison, Status, UpdateCallback
from engine.corpus import Passage
from engine.errors import ArtifactError, InputError, PragError
from engine.methods import (
    DEFAULT_LORA_SPAN,
    DEFAULT_MERGE,
    LORA_SPANS,
    MERGES,
    METHODS,
    ORDERS,
    AdapterSource,
    Method,
    PromptKind,
    check_choice,
    parse_layers,
)
from engine.models import DEFAULT_MODEL_ID, LoadedModel
from engine.progress import Progress, ProgressCallback
from engine.prompts import clean_answer, generation_prompt, question_offset
from engine.retrieval import Hit, Retriever
from engine.store import EncodeConfig, LoraStore
from engine.validate import positive

if TYPE_CHECKING:
    from engine.rerank import LLMReranker, RerankResult
    from engine.translator import ParameterTranslator

__all__ = ["Answer", "AnswerUpdate", "AskRequest", "Comparison", "Explorer", "PassagesChosen", "Status", "UpdateCallback"]

MAX_QUESTION_CHARS = 2000


class PassageEncoder(Protocol):
    """Fills the LoRA store for passages that have no PRAG LoRA yet (engine.offline.encode.OnDemandEncoder).

    Handed to the Explorer at construction, so the offline stages never import the explorer.
    """

    def __call__(self, passages: Sequence[Passage], store: LoraStore, progress: ProgressCallback | None,
                 cancel: threading.Event | None) -> None: ...


@dataclass(frozen=True)
class AskRequest:
    """One question and how to answer it: everything `Explorer.ask` needs, as plain data."""

    question: str
    methods: tuple[Method, ...] = tuple(METHODS.values())
    top_k: int = 3
    max_new_tokens: int = 32
    rerank: str = "none"
    """"none": BM25 top-k; "dynamic": the reranker picks among `candidates` hits."""
    candidates: int = 10
    encode_missing: bool = False
    """Train missing PRAG LoRAs on demand (slow) instead of reporting them missing."""
    hits: tuple[Hit, ...] | None = None
    """Passages to answer with as given (a QA row's own, the user's choice): no retrieval, no rerank."""
    pool: tuple[Hit, ...] | None = None
    """Candidates for the reranker instead of the retriever's (a QA row's own passages)."""
    scores: tuple[str, ...] = ()
    """Candidate answers whose log-probability every method's prompt gives them (the probes)."""
    layers: tuple[int, int] | None = None
    """Inject PRAG/DyPRAG LoRAs only into these layers (inclusive); None = all."""
    merge: str = DEFAULT_MERGE
    """How the passages' PRAG LoRAs combine (engine.methods.MERGES)."""
    order: str = "best-last"
    """Passage order in the prompt (engine.methods.ORDERS): best nearest the question by default."""
    lora_span: str = DEFAULT_LORA_SPAN
    """Which prompt tokens a combine method's LoRA acts on (engine.methods.LORA_SPANS)."""
    recipe: str | None = None
    """PRAG encode recipe to read and encode LoRAs with (engine.offline.recipes); None = the explorer's."""


@dataclass(frozen=True)
class PassagesChosen:
    """The pipeline decided which passages every method gets (before any answer is generated)."""

    hits: tuple[Hit, ...]
    rerank: RerankResult | None = None
    seconds: float = 0.0
    """Retrieval plus reranking."""


PipelineEvent = PassagesChosen | AnswerUpdate
EventCallback = Callable[[PipelineEvent], None]


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


def merge_weights(merge: str, count: int, scores: Sequence[float] | None) -> list[float]:
    """Per-passage weights of a PRAG merge: 1 each (sum), 1/n (mean), or each passage's share of the retrieval scores."""
    if merge == "mean":
        return [1.0 / count] * count
    if merge == "weighted" and scores is not None and len(scores) == count:
        positive = [max(float(s), 0.0) for s in scores]
        total = sum(positive)
        return [s / total for s in positive] if total > 0 else [1.0 / count] * count
    return [1.0] * count


@dataclass
class _Plan:
    """One question's rows before generation (`Explorer._plan`), so several questions can share one pass."""

    question: str
    hits: list[Hit]
    methods: list[Method]
    answers: list[Answer]
    on_update: UpdateCallback | None
    start: float
    order: str
    candidates: list[str]
    score_ids: list[list[int]]
    rows: list[int] = field(default_factory=list)
    """Indices into `methods` of the rows that run (the others failed to prepare)."""
    adapters: list[Adapter | None] = field(default_factory=list)
    prompts: dict[PromptKind, str] = field(default_factory=dict)
    lora_span: str = "all"
    adapt_from: dict[PromptKind, int] = field(default_factory=dict)
    """Prompt tokens an adapter leaves alone, per prompt kind (the passages, under `lora_span` "question")."""
    prep_time: dict[AdapterSource, float] = field(default_factory=dict)

    def emit(self, index: int, delta: str = "", **changes: Any) -> None:
        for key, value in changes.items():
            setattr(self.answers[index], key, value)
        if self.on_update is not None:
            self.on_update(AnswerUpdate(index, replace(self.answers[index]), delta))


class Explorer:
    """The loaded model and everything it answers with; `ask` runs the whole question pipeline.

    Assembled from settings in one place, `engine.session.open_explorer`; tests build one directly.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        retriever: Retriever,
        store: LoraStore,
        translator: ParameterTranslator | None = None,
        translator_note: str = "",
        encoder: PassageEncoder | None = None,
        reranker: LLMReranker | None = None,
    ) -> None:
        from engine.translator import EmbeddingCache

        self.loaded = loaded
        self.retriever = retriever
        self.store = store
        self.translator = translator
        self.translator_note = translator_note
        """Why there is no translator, shown in DyPRAG answer slots."""
        self.embeddings = EmbeddingCache(loaded)
        self.reranker = reranker
        """Dynamic reranker; created on first use with the answering model unless given."""
        self.encoder = encoder
        """Encodes missing PRAG LoRAs on demand; None = a missing LoRA is that answer's error."""
        self.model_lock = threading.RLock()
        """Held by anything that runs the model (generation, embeddings, reranking, encoding): hooks are per model."""

    # --- retrieval ----------------------------------------------------------------

    def retrieve(self, question: str, top_k: int = 3) -> list[Hit]:
        return self.retriever.search(validate_question(question), top_k)

    def rerank_hits(self, question: str, pool: Sequence[Hit], top_k: int = 3,
                    cancel: threading.Event | None = None) -> tuple[list[Hit], RerankResult]:
        """Let the reranker choose among given candidates (e.g. a QA row's own passages)."""
        from engine.rerank import LLMReranker

        if self.reranker is None:
            self.reranker = LLMReranker(self.loaded)
        with self.model_lock:
            result = self.reranker.rerank(question, list(pool), top_k, cancel)
        return result.kept, result

    def use_recipe(self, config: EncodeConfig) -> None:
        """Read (and encode on demand) the LoRAs of another encode recipe: same store root, its own folder."""
        self.store = LoraStore(self.store.root, self.loaded.model_id, config)

    # --- adapters -----------------------------------------------------------------

    def prag_adapter(self, passages: Sequence[Passage], on_progress: ProgressCallback | None = None,
                     cancel: threading.Event | None = None, encode_missing: bool = False, merge: str = DEFAULT_MERGE,
                     weights: Sequence[float] | None = None) -> Adapter:
        """Stored LoRAs of the passages, merged (sum, mean or `weights`-weighted); missing ones encoded first when allowed."""
        missing = [p for p in passages if not self.store.has(p)]
        if missing and encode_missing and self.encoder is not None:
            with self.model_lock:  # training runs the same model a generation hooks
                self.encoder(missing, self.store, on_progress, cancel)
            missing = [p for p in passages if not self.store.has(p)]
        if missing:
            raise ArtifactError(
                f"no PRAG LoRA for {len(missing)} of {len(passages)} passages",
                "run `prag encode` on this corpus, or ask with --encode",
            )
        adapters = [a for a in (self.store.get(p) for p in passages) if a is not None]
        merged = merge_sum(adapters, merge_weights(merge, len(adapters), weights), merge)
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
        *,
        scores: Sequence[str] = (),
        layers: tuple[int, int] | None = None,
        merge: str = DEFAULT_MERGE,
        order: str = "best-last",
        lora_span: str = DEFAULT_LORA_SPAN,
    ) -> Comparison:
        """Every method as one row of one batched generation on `hits` (see `AskRequest` for the options)."""
        positive(max_new_tokens, "max-new-tokens")
        # One comparison at a time per model: preparing adapters (embeddings, encoding) and generating
        # all run the model, and another thread's hooks must never see those forward passes.
        with self.model_lock:
            plan = self._plan(question, hits, methods, on_update, cancel, encode_missing, scores, layers, merge, order, lora_span)
            self._generate([plan], max_new_tokens, cancel, ignore_eos)
        return self._finish(plan)

    def _plan(self, question: str, hits: Sequence[Hit], methods: Sequence[Method], on_update: UpdateCallback | None,
              cancel: threading.Event | None, encode_missing: bool, scores: Sequence[str], layers: tuple[int, int] | None,
              merge: str, order: str, lora_span: str = DEFAULT_LORA_SPAN) -> _Plan:
        """One question's rows, adapters prepared: what several questions can share one generation pass with."""
        question = validate_question(question)
        merge, order = check_choice(merge, MERGES, "merge"), check_choice(order, ORDERS, "passage order")
        lora_span = check_choice(lora_span, LORA_SPANS, "LoRA span")
        if layers is not None:
            parse_layers(f"{layers[0]}-{layers[1]}", self.loaded.arch.num_layers)
        candidates = [c.strip() for c in scores]
        if any(not c for c in candidates):
            raise InputError("a candidate answer to score is empty", "give each --score a non-empty answer")
        tokenizer = self.loaded.tokenizer
        score_ids = [tokenizer(f" {c}", add_special_tokens=False)["input_ids"] for c in candidates]
        plan = _Plan(question, list(hits), list(methods), [Answer(m.name, m.label) for m in methods], on_update,
                     time.perf_counter(), order, candidates, score_ids)
        passages = [h.passage for h in hits]
        prepared: dict[AdapterSource, Adapter | PragError] = {}
        for index, method in enumerate(methods):
            if cancel is not None and cancel.is_set():
                break
            adapter: Adapter | None = None
            if method.adapter is not AdapterSource.NONE:
                if method.adapter not in prepared:
                    plan.emit(index, status="preparing")
                    t0 = time.perf_counter()
                    prepared[method.adapter] = self._prepare(method.adapter, passages, index, plan.emit, cancel, encode_missing,
                                                             merge, [h.score for h in hits], layers)
                    plan.prep_time[method.adapter] = time.perf_counter() - t0
                result = prepared[method.adapter]
                if isinstance(result, PragError):
                    plan.emit(index, status="error", error=result.one_line())
                    continue
                adapter = result
                plan.answers[index].norms = adapter.layer_norms(self.loaded.arch.num_layers)
            plan.rows.append(index)
            plan.adapters.append(adapter)
        shown = passages if order == "best-first" else passages[::-1]
        plan.prompts = {kind: generation_prompt(tokenizer, question, shown if kind is PromptKind.PASSAGES else ()) for kind in PromptKind}
        plan.lora_span, plan.adapt_from = lora_span, {kind: 0 for kind in PromptKind}
        if lora_span == "question":
            plan.adapt_from[PromptKind.PASSAGES] = question_offset(tokenizer, question, shown)
        return plan

    def _generate(self, plans: Sequence[_Plan], max_new_tokens: int, cancel: threading.Event | None, ignore_eos: bool) -> None:
        """Every runnable row of every plan in one batched generation; answers stream through each plan's callback."""
        from engine.generate import generate_rows

        rows = [(plan, index) for plan in plans for index in plan.rows]
        if not rows or (cancel is not None and cancel.is_set()):
            return
        for plan, index in rows:
            plan.emit(index, status="generating")

        def on_token(row: int, delta: str, result) -> None:
            plan, index = rows[row]
            plan.emit(index, delta, text=result.text, tokens=len(result.token_ids))

        results = generate_rows(
            self.loaded.model, self.loaded.tokenizer, [plan.prompts[plan.methods[i].prompt] for plan, i in rows],
            [adapter for plan in plans for adapter in plan.adapters], max_new_tokens, on_token, cancel,
            stop_at_newline=not ignore_eos, ignore_eos=ignore_eos, row_score_ids=[plan.score_ids for plan, _ in rows],
            adapt_from=[plan.adapt_from[plan.methods[i].prompt] for plan, i in rows],
        )
        cancelled = cancel is not None and cancel.is_set()
        for (plan, index), result in zip(rows, results, strict=True):
            extra = plan.prep_time.get(plan.methods[index].adapter, 0.0)
            status: Status = "cancelled" if cancelled and not result.finished else "done"
            probes = [CandidateScore(c, lp, len(ids)) for c, lp, ids in zip(plan.candidates, result.scores, plan.score_ids, strict=False)]
            plan.emit(index, text=clean_answer(result.text), tokens=len(result.token_ids), latency_s=result.latency_s + extra,
                      status=status, scores=probes)

    def _finish(self, plan: _Plan) -> Comparison:
        for index, answer in enumerate(plan.answers):
            if answer.status not in ("done", "error"):
                plan.emit(index, status="cancelled")
        where = self.loaded.placement
        extra: dict[str, Any] = {"device": where.device, "dtype": where.dtype}
        if plan.order != "best-first":
            extra["order"] = plan.order
        if plan.lora_span != "all":
            extra["lora_span"] = plan.lora_span
        return Comparison(plan.question, self.loaded.model_id, plan.hits, plan.answers, time.perf_counter() - plan.start, extra)

    def ask_batch(self, requests: Sequence[AskRequest], on_events: Sequence[EventCallback | None] | None = None,
                  cancel: threading.Event | None = None) -> list[Comparison]:
        """Several questions' answers in one batched generation (`prag eval --batch-questions`): on a GPU
        the rows of eight questions cost about what one question's do. Requests that cannot share a pass
        (dynamic reranking, different token budgets or recipes) are asked one by one, with the same results."""
        from engine.rerank import check_mode

        events = list(on_events) if on_events is not None else [None] * len(requests)
        shareable = (len(requests) > 1 and all(r.rerank == "none" for r in requests)
                     and len({(r.max_new_tokens, r.recipe) for r in requests}) == 1)
        if not shareable:
            return [self.ask(r, e, cancel) for r, e in zip(requests, events, strict=True)]
        for request in requests:
            validate_question(request.question)
            check_mode(request.rerank)
            positive(request.max_new_tokens, "max-new-tokens")
        if requests[0].recipe is not None:
            from engine.offline.recipes import recipe_config

            config = recipe_config(requests[0].recipe)
            if config != self.store.config:
                self.use_recipe(config)
        chosen = [self._choose_passages(r, "none", e, cancel)[0] for r, e in zip(requests, events, strict=True)]
        with self.model_lock:
            plans = [self._plan(r.question, hits, r.methods, e, cancel, r.encode_missing, r.scores, r.layers, r.merge, r.order,
                                r.lora_span)
                     for r, hits, e in zip(requests, chosen, events, strict=True)]
            self._generate(plans, requests[0].max_new_tokens, cancel, ignore_eos=False)
        return [self._finish(plan) for plan in plans]

    def _choose_passages(self, request: AskRequest, rerank: str, on_event: EventCallback | None,
                         cancel: threading.Event | None) -> tuple[list[Hit], RerankResult | None]:
        """The given passages, the reranker's choice, or the retriever's top-k; announced as `PassagesChosen`."""
        start = time.perf_counter()
        reranked: RerankResult | None = None
        if request.hits is not None:
            hits = list(request.hits)
        elif rerank == "dynamic":
            positive(request.candidates, "candidates")
            pool = (list(request.pool) if request.pool is not None
                    else self.retrieve(request.question, max(request.candidates, request.top_k)))
            hits, reranked = self.rerank_hits(request.question, pool, request.top_k, cancel)
        else:
            hits = list(request.pool)[: request.top_k] if request.pool is not None else self.retrieve(request.question, request.top_k)
        if on_event is not None:
            on_event(PassagesChosen(tuple(hits), reranked, time.perf_counter() - start))
        return hits, reranked

    def _prepare(self, source: AdapterSource, passages: Sequence[Passage], index: int, emit, cancel, encode_missing: bool,
                 merge: str, weights: Sequence[float], layers: tuple[int, int] | None) -> Adapter | PragError:
        if not passages:
            return InputError("no passage was retrieved, so there is nothing to inject", "rephrase the question or add passages")
        try:
            if source is AdapterSource.PRAG:
                def on_progress(p: Progress) -> None:
                    emit(index, status="encoding", progress=p)

                adapter = self.prag_adapter(passages, on_progress, cancel, encode_missing, merge, weights)
            else:
                adapter = self.dyprag_adapter(passages)
            return keep_layers(adapter, layers)
        except PragError as exc:
            return exc

    def ask(self, request: AskRequest, on_event: EventCallback | None = None, cancel: threading.Event | None = None) -> Comparison:
        """The question pipeline: retrieve (or take the given passages), optionally rerank, compare.

        `on_event` gets `PassagesChosen` once the passages are decided, then every `AnswerUpdate`;
        `cancel` stops the reranker or the generation within a token.
        """
        from engine.rerank import check_mode

        validate_question(request.question)
        rerank = check_mode(request.rerank)
        if request.recipe is not None:
            from engine.offline.recipes import recipe_config

            config = recipe_config(request.recipe)
            if config != self.store.config:
                self.use_recipe(config)
        hits, reranked = self._choose_passages(request, rerank, on_event, cancel)
        comparison = self.compare(request.question, hits, request.methods, request.max_new_tokens, on_event, cancel,
                                  request.encode_missing, scores=request.scores, layers=request.layers, merge=request.merge,
                                  order=request.order, lora_span=request.lora_span)
        if reranked is not None:
            comparison.extra["rerank"] = reranked.to_json()
        return comparison
