"""What every retrieval backend shares, so that they rank alike and report hits alike.

The tokenizer folds case, splits on anything that is not a letter or digit and
drops English stop words, so "Who founded Velmora?" matches "velmora" and
"founded" but not "who". Each hit reports the query terms it matched, which the
UI highlights.

The BM25 backends score with the same Okapi formulas (`okapi_idf`, `length_norm`,
`term_score`) and pick their top k with the same `top_k_indices`, so moving a
corpus from one backend to another changes no answer.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from engine.corpus import Passage
from engine.validate import positive

if TYPE_CHECKING:
    import numpy as np

_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)

STOP_WORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just me more most my
    myself no nor not now of off on once only or other our ours ourselves out over own same she should so
    some such than that the their theirs them themselves then there these they this those through to too
    under until up very was we were what when where which while who whom why will with would you your yours
    yourself yourselves""".split()
)


def tokenize(text: str) -> list[str]:
    return [token for token in _TOKEN.findall(text.lower()) if token not in STOP_WORDS]


@dataclass(frozen=True)
class BM25Params:
    """Okapi BM25 parameters (rank-bm25's `BM25Okapi` defaults), shared by every BM25 backend so they rank alike."""

    k1: float = 1.5
    b: float = 0.75
    epsilon: float = 0.25
    """A negative idf (term in more than half the passages) becomes epsilon x the mean idf."""


EMPTY_TOKEN = "\u2205"
"""Stands in for the tokens of a stop-word-only passage (rank-bm25 divides by the mean length)."""


@dataclass(frozen=True)
class Hit:
    passage: Passage
    score: float
    rank: int
    """1-based position in the result list."""
    matched_terms: tuple[str, ...]


class Retriever(Protocol):
    """Anything that turns a question into ranked passages."""

    def search(self, query: str, k: int) -> list[Hit]: ...

    def __len__(self) -> int: ...


# --- Okapi BM25, as rank-bm25's `BM25Okapi` computes it -------------------------------------


def okapi_idf(df: np.ndarray, n_docs: int, epsilon: float) -> np.ndarray:
    """rank-bm25 `BM25Okapi._calc_idf`, vectorized: (V,) document frequencies -> (V,) idf."""
    import numpy as np

    idf = np.log(n_docs - df + 0.5) - np.log(df + 0.5)
    floor = epsilon * float(idf.mean()) if len(idf) else 0.0
    return np.where(idf < 0, floor, idf)


def length_norm(lengths: np.ndarray, avgdl: float, k1: float, b: float) -> np.ndarray:
    """(N,) the part of BM25's denominator that depends only on the passage: computed once per corpus."""
    return k1 * (1 - b + b * lengths / avgdl)


def term_score(idf: float | np.ndarray, tf: np.ndarray, norm: np.ndarray, k1: float) -> np.ndarray:
    """One query term's BM25 contribution, with `norm` from `length_norm` (rank-bm25's expression, term by term)."""
    return idf * (tf * (k1 + 1) / (tf + norm))


# --- ranking ---------------------------------------------------------------------------------


def query_terms(query: str, k: int) -> list[str]:
    """The query's terms, after checking k the same way for every backend; [] means nothing to search for."""
    positive(k, "top-k", "ask for 1 passage or more")
    return tokenize(query)


def top_k_indices(scores: np.ndarray, k: int) -> list[int]:
    """Indices of the k highest scores, best first; ties go to the earlier passage (every BM25 backend agrees)."""
    import numpy as np

    k = min(k, len(scores))
    if k < 1:
        return []
    top = np.argpartition(-scores, k - 1)[:k]
    return sorted(top.tolist(), key=lambda i: (-float(scores[i]), i))


def ranked_hits(passages: Sequence[Passage], scores: Sequence[float], terms: Sequence[str],
                passage_terms: Sequence[Collection[str]] | None = None) -> list[Hit]:
    """Hits in the given order, stopping at the first passage that shares no term with the query.

    A passage that matches nothing only scores through the epsilon idf floor or float
    noise: showing it would look like a bug. `passage_terms` skips re-tokenizing when a
    backend already holds each passage's terms.
    """
    unique = list(dict.fromkeys(terms))
    hits = []
    for rank, (passage, score) in enumerate(zip(passages, scores, strict=False), start=1):
        present = passage_terms[rank - 1] if passage_terms is not None else set(tokenize(f"{passage.title} {passage.text}"))
        matched = tuple(t for t in unique if t in present)
        if not matched:
            break
        hits.append(Hit(passage, float(score), rank, matched))
    return hits


def hits_from_passages(passages: Sequence[Passage], query: str, scores: Sequence[float] | None = None) -> list[Hit]:
    """Wrap given passages (e.g. from a QA file) as hits, in their given order; scores 0 unless given."""
    terms = list(dict.fromkeys(tokenize(query)))
    hits = []
    for rank, passage in enumerate(passages, start=1):
        present = set(tokenize(f"{passage.title} {passage.text}"))
        score = float(scores[rank - 1]) if scores is not None else 0.0
        hits.append(Hit(passage, score, rank, tuple(t for t in terms if t in present)))
    return hits
