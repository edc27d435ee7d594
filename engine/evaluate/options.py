"""What an evaluation run asks for (`EvalOptions`) and the reference defaults it starts from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.methods import DEFAULT_LORA_SPAN, DEFAULT_MERGE, METHODS, Method

REFERENCE_MAX_NEW_TOKENS = 20
"""The reference's generation budget for direct answers."""
REFERENCE_TOP_K = 3


@dataclass(frozen=True)
class EvalOptions:
    """What to evaluate and how; `Settings` says which model, translator and LoRA store."""

    data: Path
    """QA file in the shared JSONL format."""
    methods: tuple[Method, ...] = tuple(METHODS.values())
    limit: int | None = None
    """Evaluate only the first N questions of the file (after `offset`); None = all."""
    offset: int = 0
    """Skip this many questions first: a dev split of the same file (`--offset 200 --limit 100`)."""
    group: str | None = None
    """Only the questions whose `meta.group` is this (the sample corpus's known / fictional / counterfactual)."""
    top_k: int = REFERENCE_TOP_K
    max_new_tokens: int = REFERENCE_MAX_NEW_TOKENS
    corpus: Path | None = None
    """Retrieve from this corpus instead of the passages given in the file."""
    index: Path | None = None
    """Retrieve from this index folder (`prag corpus index`) instead of the passages given in the file."""
    out_dir: Path | None = None
    """Where prediction files go; None = `<PRAG_HOME>/eval`."""
    encode_missing: bool = False
    """Encode missing PRAG LoRAs on demand (slow) instead of reporting an error."""
    rerank: str = "none"
    """Passage selection: "none" (BM25 top-k) or "dynamic" (the LLM reranker picks order and count)."""
    candidates: int = 10
    """BM25 candidates the dynamic reranker chooses from."""
    reranker_model: Path | None = None
    """A local instruct model for dynamic reranking; None = the answering model."""
    probes: bool = True
    """Score the gold (and conflict) answers' log-probability under every method (engine.probes)."""
    merge: str = DEFAULT_MERGE
    """How the passages' PRAG LoRAs combine (engine.methods.MERGES)."""
    order: str = "best-last"
    """Passage order in the prompt (engine.methods.ORDERS)."""
    lora_span: str = DEFAULT_LORA_SPAN
    """Which prompt tokens a combine method's LoRA acts on (engine.methods.LORA_SPANS)."""
    layers: tuple[int, int] | None = None
    """Inject PRAG/DyPRAG LoRAs only into these layers; None = all."""
    batch_questions: int = 1
    """Questions answered in one batched generation (all their methods' rows together); same answers as one at a time."""
    reuse: Path | None = None
    """A record (`--record`) whose answers of methods with this run's settings are copied instead of computed."""
