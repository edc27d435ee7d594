"""Retrieval: the `Retriever` protocol, BM25 over an in-memory corpus, and built indexes.

`base` holds what every backend shares (tokenization, BM25 parameters and scoring, `Hit`,
top-k); the backends live one per module (`bm25`, `bm25s`, `elastic`) and `index` holds
the on-disk index format and opens whichever backend the settings name.
"""

from engine.retrieval.base import BM25Params, Hit, Retriever, hits_from_passages, tokenize, top_k_indices
from engine.retrieval.bm25 import BM25Retriever

__all__ = ["BM25Params", "BM25Retriever", "Hit", "Retriever", "hits_from_passages", "tokenize", "top_k_indices"]
