"""Dynamic reranking, DynamicRAG-style: an instruct LLM picks which candidates to keep, and in what order.

The reranker sees the question and the top-N BM25 candidates, each tagged `[i]`,
and answers with identifiers, best first (`[3] > [1]`, the output style of
DynamicRAG's reranker). The number it keeps is its own choice. Parsing is
lenient (brackets, commas, "passage 3", ">" chains); an empty or unparseable
answer falls back to BM25 order with a visible note, never silently.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from engine.errors import InputError
from engine.retrieval import Hit

if TYPE_CHECKING:
    from engine.models import LoadedModel

RERANK_MODES = ("none", "dynamic")
_BRACKETED = re.compile(r"\[\s*(\d+)\s*\]")
_NAMED = re.compile(r"(?:passage|document|doc|id)\s*#?\s*(\d+)", re.IGNORECASE)
_BARE = re.compile(r"(?<![\w.])(\d+)(?![\w.])")
_PASSAGE_CHARS = 150


@dataclass
class RerankResult:
    kept: list[Hit]
    """Passages every method gets, best first (re-numbered ranks)."""
    dropped: list[Hit]
    raw: str = ""
    """The reranker's text, as generated."""
    fallback: bool = False
    """True when the answer was unusable and BM25 order was kept."""
    note: str = ""
    order: list[int] = field(default_factory=list)
    """Chosen 1-based candidate numbers, best first."""

    def to_json(self) -> dict:
        return {
            "kept": [h.passage.id for h in self.kept],
            "dropped": [h.passage.id for h in self.dropped],
            "raw": self.raw,
            "fallback": self.fallback,
            "note": self.note,
        }


def parse_identifiers(raw: str, candidates: int) -> list[int]:
    """Candidate numbers (1-based) in the order given; out-of-range and repeats are dropped."""
    text = raw.strip()
    for pattern in (_BRACKETED, _NAMED, _BARE):
        numbers = [int(m) for m in pattern.findall(text)]
        if numbers:
            break
    else:
        return []
    return list(dict.fromkeys(n for n in numbers if 1 <= n <= candidates))


RERANK_PREFIX = "The passages that answer the question are ["


def rerank_prompt(tokenizer, question: str, candidates: Sequence[Hit]) -> str:
    """Question first, then short numbered passages; the reply is pre-filled up to the first '['."""
    from engine.prompts import render_chat

    listing = "\n".join(f"[{i}] {h.passage.title}: {h.passage.text[:_PASSAGE_CHARS]}" for i, h in enumerate(candidates, start=1))
    user = (
        f"Question: {question.strip()}\n\nPassages:\n{listing}\n\n"
        "Which passages answer the question? List their numbers in brackets, best first, e.g. [2] > [1]."
    )
    return render_chat(tokenizer, user) + RERANK_PREFIX


def apply_order(candidates: Sequence[Hit], order: Sequence[int]) -> tuple[list[Hit], list[Hit]]:
    chosen = set(order)
    kept = [Hit(candidates[n - 1].passage, candidates[n - 1].score, rank, candidates[n - 1].matched_terms)
            for rank, n in enumerate(order, start=1)]
    dropped = [h for i, h in enumerate(candidates, start=1) if i not in chosen]
    return kept, dropped


def bm25_fallback(candidates: Sequence[Hit], top_k: int, raw: str, note: str) -> RerankResult:
    return RerankResult(list(candidates[:top_k]), list(candidates[top_k:]), raw, True, note,
                        list(range(1, min(top_k, len(candidates)) + 1)))


class LLMReranker:
    """Asks an instruct model (the answering model by default) for the passages to keep."""

    def __init__(self, loaded: LoadedModel, max_new_tokens: int = 24) -> None:
        self.loaded = loaded
        self.max_new_tokens = max_new_tokens

    def generate(self, prompt: str, cancel: threading.Event | None = None) -> str:
        from engine.generate import generate_rows

        rows = generate_rows(self.loaded.model, self.loaded.tokenizer, [prompt], [None], self.max_new_tokens,
                             cancel=cancel, stop_at_newline=True)
        return "[" + rows[0].text

    def rerank(self, question: str, candidates: Sequence[Hit], top_k: int, cancel: threading.Event | None = None) -> RerankResult:
        if not candidates:
            return RerankResult([], [], "", False, "no candidates to rerank")
        raw = self.generate(rerank_prompt(self.loaded.tokenizer, question, candidates), cancel)
        if cancel is not None and cancel.is_set():
            return bm25_fallback(candidates, top_k, raw, "reranking cancelled; kept BM25 order")
        order = parse_identifiers(raw, len(candidates))
        if not order:
            return bm25_fallback(candidates, top_k, raw, "reranker answer had no usable identifiers; kept BM25 order")
        kept, dropped = apply_order(candidates, order)
        return RerankResult(kept, dropped, raw, False, f"reranker kept {len(kept)} of {len(candidates)}", order)


def check_mode(mode: str) -> str:
    mode = (mode or "none").strip().lower()
    if mode not in RERANK_MODES:
        raise InputError(f"unknown rerank mode {mode!r}", f"choose from {', '.join(RERANK_MODES)}")
    return mode
