"""What the explorer shows and exports of a dynamic rerank, free of widgets.

`engine.rerank.RerankResult` gives the kept passages (re-numbered 1..n, best first)
and the dropped ones (with their BM25 ranks), plus `order`, the BM25 position of
each kept passage. The passages panel wants one row per candidate with both
positions ("1 (bm25 #4)"), and the exports want the same rows as plain data, so
both are derived here, once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.rerank import RerankResult
    from engine.retrieval import Hit

@dataclass(frozen=True)
class RerankRow:
    """One BM25 candidate after reranking."""

    hit: Hit
    """The passage; for a kept one, `hit.rank` is its new (reranked) rank."""
    bm25_rank: int
    """1-based position in the BM25 candidate list the reranker saw."""
    kept: bool
    """False when the reranker dropped it (no method gets it)."""

    @property
    def rank(self) -> int | None:
        """New rank, or None for a dropped candidate."""
        return self.hit.rank if self.kept else None


def rerank_rows(result: RerankResult) -> list[RerankRow]:
    """Kept candidates in reranked order, then dropped ones in BM25 order."""
    kept = [
        # `order[i]` is the BM25 position of kept[i]; a fallback keeps the BM25 hits themselves
        RerankRow(hit, result.order[i] if i < len(result.order) else hit.rank, True)
        for i, hit in enumerate(result.kept)
    ]
    dropped = sorted((RerankRow(hit, hit.rank, False) for hit in result.dropped), key=lambda row: row.bm25_rank)
    return kept + dropped


def candidate_count(top_k: int, candidates: int) -> int:
    """How many BM25 candidates `Explorer.select` hands the reranker (at most; a small corpus may have fewer)."""
    return max(candidates, top_k)


def summary(result: RerankResult) -> str:
    """One line for the passages panel's title, e.g. "reranked 10 candidates, kept 3"."""
    total = len(result.kept) + len(result.dropped)
    if result.fallback:
        return f"BM25 top-{len(result.kept)} of {total} (reranker fell back)"
    return f"reranked {total} candidates, kept {len(result.kept)}"


def rerank_block(result: RerankResult, candidates: int, seconds: float | None = None) -> dict[str, Any]:
    """The `rerank` entry of a comparison's JSON: `RerankResult.to_json()` plus every candidate's positions.

    Args:
        result: the reranker's decision for this question.
        candidates: the `--candidates` setting the run asked for.
        seconds: how long retrieval and reranking took in this run; None when the run
            re-used an earlier rerank of the same question (ctrl+r keeps the passages
            and the user's switches instead of reranking again).
    """
    block: dict[str, Any] = {"mode": "dynamic", "candidates": candidates, **result.to_json()}
    block["seconds"] = None if seconds is None else round(seconds, 3)
    block["reused"] = seconds is None
    block["positions"] = [
        {
            "id": row.hit.passage.id,
            "title": row.hit.passage.title,
            "rank": row.rank,
            "bm25_rank": row.bm25_rank,
            "score": round(row.hit.score, 4),
            "kept": row.kept,
        }
        for row in rerank_rows(result)
    ]
    return block
