"""Training signal for a reranker: which passage orderings made the generator answer well.

For each question, several orderings of the BM25 candidates are tried with one
answering method (BM25's top-k, the reranker's choice, each of the first few
candidates alone, no passage), and each gets the answer's F1 and EM against the
gold answers. The JSONL this writes (one line per question, appended and fsynced,
resumable) is what preference training (SFT on the best ordering, DPO on
best-vs-worst pairs, as DynamicRAG does) consumes:

    {"id", "question", "answers", "method",
     "candidates": [{"n", "id", "title", "text", "bm25"}],        # n = the identifier shown to the reranker
     "trials": [{"source", "order": [n, ...], "prediction", "f1", "em"}],
     "best": source of the highest-F1 trial (ties: fewest passages, then listing order),
     "prediction": the reranker trial's prediction, "error": null}
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from engine.methods import Method
from engine.metrics import exact_match, f1_score
from engine.progress import ProgressCallback, check_cancel, report
from engine.qa import QAItem
from engine.retrieval import BM25Retriever, Hit

if TYPE_CHECKING:
    from engine.explorer import Explorer


def candidate_pool(explorer: Explorer, item: QAItem, candidates: int, use_corpus: bool) -> list[Hit]:
    if use_corpus or not item.passages:
        return explorer.retrieve(item.question, candidates)
    return BM25Retriever(item.passages).search(item.question, candidates)


def orderings(pool_size: int, top_k: int, reranker_order: Sequence[int], singles: int) -> list[tuple[str, list[int]]]:
    """Distinct orderings to try, each a list of 1-based candidate numbers."""
    tried: list[tuple[str, list[int]]] = [("bm25_top_k", list(range(1, min(top_k, pool_size) + 1)))]
    if reranker_order:
        tried.append(("reranker", list(reranker_order)))
    tried += [(f"single_{n}", [n]) for n in range(1, min(singles, pool_size) + 1)]
    tried.append(("none", []))
    unique: dict[tuple[int, ...], tuple[str, list[int]]] = {}
    for source, order in tried:
        unique.setdefault(tuple(order), (source, order))
    return list(unique.values())


def collect(
    explorer: Explorer,
    items: Sequence[QAItem],
    method: Method,
    out: Path,
    candidates: int = 10,
    top_k: int = 3,
    max_new_tokens: int = 20,
    singles: int = 3,
    use_corpus: bool = False,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> int:
    """Append one record per unfinished question; returns how many were written now."""
    from engine.evaluate import PredictionFile

    records = PredictionFile(Path(out), method.name)
    records.load()
    todo = [item for item in items if item.id not in records.records]
    written = 0
    try:
        report(progress, "Collecting rerank data", len(items) - len(todo), len(items))
        for item in todo:
            check_cancel(cancel)
            pool = candidate_pool(explorer, item, candidates, use_corpus)
            _, reranked = explorer.rerank_hits(item.question, pool, top_k, cancel)
            trials = []
            for source, order in orderings(len(pool), top_k, [] if reranked.fallback else reranked.order, singles):
                check_cancel(cancel)
                hits = [pool[n - 1] for n in order]
                answer = explorer.compare(item.question, hits, [method], max_new_tokens, cancel=cancel).answers[0]
                text = "" if answer.error else answer.text
                trials.append({"source": source, "order": order, "prediction": text,
                               "f1": round(f1_score(text, item.answers).f1, 4), "em": exact_match(text, item.answers)})
            best = max(trials, key=lambda t: (t["f1"], -len(t["order"])))
            reranker_trial = next((t for t in trials if t["source"] == "reranker"), trials[0])
            records.append({
                "id": item.id, "question": item.question, "answers": list(item.answers), "method": method.name,
                "candidates": [{"n": n, "id": h.passage.id, "title": h.passage.title, "text": h.passage.text, "bm25": round(h.score, 4)}
                               for n, h in enumerate(pool, start=1)],
                "reranker": reranked.to_json(), "trials": trials, "best": best["source"],
                "prediction": reranker_trial["prediction"], "error": None,
            })
            written += 1
            report(progress, "Collecting rerank data", len(items) - len(todo) + written, len(items))
    finally:
        records.close()
    return written
