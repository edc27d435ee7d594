"""Retrieval: the `Retriever` protocol, BM25 over an in-memory corpus, and built indexes.

`base` holds what every backend shares (tokenization, BM25 parameters, `Hit`, top-k);
the backends live one per module and `index` opens whichever one the settings name.
"""

from engine.retrieval.base import BM25Retriever, Hit, Retriever, hits_from_passages, tokenize, top_k_indices

__all__ = ["BM25Retriever", "Hit", "Retriever", "hits_from_passages", "tokenize", "top_k_indices"]
