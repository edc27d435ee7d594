"""Backend bm25s: a BM25 score matrix built once, memory-mapped on open, for corpora beyond memory.

bm25s keeps every (term, passage) score in a sparse CSC matrix that `bm25s.BM25.load`
memory-maps; a query sums the columns of its terms. We build that matrix ourselves,
streaming, because `bm25s.BM25.index` holds every token of the corpus as a Python
object at once (several GB at 1M passages) and reports progress through tqdm, not
through our callbacks. The files are bm25s's format, read back by bm25s, in
`DIR/bm25s/` of an index folder (see `engine.retrieval.index`).

The matrix holds exactly rank-bm25's `BM25Okapi` scores (k1 1.5, b 0.75, idf
log((N - df + 0.5) / (df + 0.5)), negative idf floored at epsilon 0.25 times the mean
idf), over `engine.retrieval.tokenize`, with the same placeholder token for stop-word-
only passages. So `bm25` and `bm25s` rank alike, ties and float32 rounding aside,
and moving a corpus to an index changes no answer.

`import bm25s` in this module is absolute: it finds the package, not this file.
"""

from __future__ import annotations

import json
from array import array
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from engine.atomic import write_text
from engine.corpus import Passage
from engine.errors import ArtifactError
from engine.retrieval.base import (
    EMPTY_TOKEN,
    BM25Params,
    Hit,
    length_norm,
    okapi_idf,
    query_terms,
    ranked_hits,
    term_score,
    tokenize,
    top_k_indices,
)
from engine.retrieval.layout import BM25S_DIR, IndexInfo, PassageFile, read_info

if TYPE_CHECKING:
    import numpy as np


class _BM25SBuilder:
    """Accumulates (passage, term, tf) triples as flat arrays, then writes bm25s's CSC layout."""

    def __init__(self, params: BM25Params) -> None:
        self.params = params
        self.vocab: dict[str, int] = {}
        self.term_ids = array("i")
        """Term id of each distinct (passage, term) pair, passage by passage."""
        self.tfs = array("I")
        self.distinct = array("i")
        """Distinct terms per passage."""
        self.lengths = array("i")
        """Terms per passage (stop words out), at least 1 (the placeholder)."""

    def add(self, passage: Passage) -> None:
        tokens = tokenize(f"{passage.title} {passage.text}") or [EMPTY_TOKEN]
        vocab = self.vocab
        counts = Counter(tokens)
        self.term_ids.extend(vocab.setdefault(t, len(vocab)) for t in counts)
        self.tfs.extend(counts.values())
        self.distinct.append(len(counts))
        self.lengths.append(len(tokens))

    def save(self, folder: Path, chunk_entries: int = 1 << 22) -> tuple[int, int]:
        """Write the bm25s index files; returns (terms, tokens).

        The CSC matrix is filled by a counting sort, a chunk of passages at a time: each
        term's column is a slice of the output (from the document frequencies), and a
        per-term cursor says where its next entry goes. Peak memory is the triples kept
        while streaming (12 bytes per (passage, term) pair) plus the output (8 bytes),
        rather than a global argsort's 8-byte index and its copies.
        """
        import bm25s
        import numpy as np

        folder.mkdir(parents=True, exist_ok=True)
        n_docs, n_terms = len(self.lengths), len(self.vocab)
        term = np.frombuffer(self.term_ids, dtype=np.int32)
        tfs = np.frombuffer(self.tfs, dtype=np.uint32)
        distinct = np.frombuffer(self.distinct, dtype=np.int32)
        lengths = np.frombuffer(self.lengths, dtype=np.int32).astype(np.float32)
        df = np.bincount(term, minlength=n_terms)
        idf = okapi_idf(df.astype(np.float64), n_docs, self.params.epsilon).astype(np.float32)
        k1, b = self.params.k1, self.params.b
        norm = length_norm(lengths, lengths.mean(), k1, b).astype(np.float32)  # (N,)
        indptr = np.zeros(n_terms + 1, dtype=np.int64)
        np.cumsum(df, out=indptr[1:])
        data = np.empty(len(term), dtype=np.float32)
        indices = np.empty(len(term), dtype=np.int32)
        cursor = indptr[:-1].copy()  # (V,) next free slot of each term's column
        entry_end = np.cumsum(distinct, dtype=np.int64)  # (N,) end of each passage's entries
        first_doc = 0
        while first_doc < n_docs:
            start = int(entry_end[first_doc - 1]) if first_doc else 0
            last_doc = max(first_doc + 1, int(np.searchsorted(entry_end, start + chunk_entries, side="right")))
            last_doc = min(last_doc, n_docs)
            stop = int(entry_end[last_doc - 1])
            t = term[start:stop]
            doc = np.repeat(np.arange(first_doc, last_doc, dtype=np.int32), distinct[first_doc:last_doc])
            tf = tfs[start:stop].astype(np.float32)
            score = term_score(idf[t], tf, norm[doc], k1)
            order = np.argsort(t, kind="stable")  # passages stay ascending within each term
            t_sorted = t[order]
            uniq, first, counts = np.unique(t_sorted, return_index=True, return_counts=True)
            rank = np.arange(len(t_sorted)) - np.repeat(first, counts)
            slots = cursor[t_sorted] + rank
            data[slots] = score[order]
            indices[slots] = doc[order]
            cursor[uniq] += counts
            first_doc = last_doc
        np.save(folder / "data.csc.index.npy", data)
        np.save(folder / "indices.csc.index.npy", indices)
        np.save(folder / "indptr.csc.index.npy", indptr)
        write_text(folder / "vocab.index.json", json.dumps(self.vocab, ensure_ascii=False))
        params = {"k1": k1, "b": b, "delta": 0.5, "method": "atire", "idf_method": "robertson", "dtype": "float32",
                  "int_dtype": "int32", "num_docs": n_docs, "version": bm25s.__version__, "backend": "numpy"}
        write_text(folder / "params.index.json", json.dumps(params, indent=2))
        return n_terms, int(lengths.sum())


class BM25SRetriever:
    """Okapi BM25 from a saved bm25s index, memory-mapped; passages read from disk per hit."""

    def __init__(self, folder: Path, info: IndexInfo | None = None, mmap: bool = True) -> None:
        import bm25s

        self.folder = Path(folder)
        self.info = info or read_info(self.folder)
        try:
            self._bm25 = bm25s.BM25.load(str(self.folder / BM25S_DIR), mmap=mmap, load_corpus=False)
        except (OSError, ValueError, KeyError) as exc:
            raise ArtifactError(f"bm25s index in {folder} is unreadable ({exc})",
                                "build it again with `prag corpus index --force`") from None
        self.passages = PassageFile(self.folder)
        self.digest = self.info.digest

    def __len__(self) -> int:
        return len(self.passages)

    def scores(self, terms: Sequence[str]) -> np.ndarray:
        """(N,) BM25 score of every passage for the (tokenized) query."""
        import numpy as np

        ids = [self._bm25.vocab_dict[t] for t in terms if t in self._bm25.vocab_dict]
        if not ids:
            return np.zeros(len(self), dtype=np.float32)
        return self._bm25.get_scores_from_ids(ids)

    def search(self, query: str, k: int) -> list[Hit]:
        terms = query_terms(query, k)
        if not terms:
            return []
        scores = self.scores(terms)
        order = top_k_indices(scores, k)
        return ranked_hits([self.passages[i] for i in order], [float(scores[i]) for i in order], terms)
