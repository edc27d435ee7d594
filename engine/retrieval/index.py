"""Retrieval indexes built once and opened many times: beyond what fits in one BM25 object.

`BM25Retriever` tokenizes the whole corpus into Python objects every time the
explorer opens: fine for the sample corpus, minutes and gigabytes at a million
passages. An index is built once by `prag corpus index` and then opened in well
under a second:

    DIR/prag-index.json          manifest (backend, counts, BM25 parameters, source corpus)
    DIR/passages.jsonl           {"id","title","text"} per passage, in index order
    DIR/passages.offsets.npy     int64 byte offset of every line, plus the file size (N + 1)
    DIR/bm25s/*                  bm25s's own saved layout (backend bm25s only)

Why each piece:

- Passages stay on disk. A hit reads its one line with `os.pread` at the offset
  the memory-mapped offsets array gives, so answering from 10M passages costs the
  offsets (80 MB, mapped, not read) and nothing per passage.
- bm25s keeps every (term, passage) score in a sparse CSC matrix that `bm25s.BM25.load`
  memory-maps; a query sums the columns of its terms. We build that matrix ourselves,
  streaming, because `bm25s.BM25.index` holds every token of the corpus as a Python
  object at once (several GB at 1M passages) and reports progress through tqdm, not
  through our callbacks. The files are bm25s's format, read back by bm25s.
- The matrix holds exactly rank-bm25's `BM25Okapi` scores (k1 1.5, b 0.75, idf
  log((N - df + 0.5) / (df + 0.5)), negative idf floored at epsilon 0.25 times the mean
  idf), over `engine.retrieval.tokenize`, with the same placeholder token for stop-word-
  only passages. So `bm25` and `bm25s` rank alike, ties and float32 rounding aside,
  and moving a corpus to an index changes no answer.
- Elasticsearch gets our tokens too (a whitespace-analyzed field of pre-tokenized
  text), so a query matches the same terms; its scoring is Lucene's BM25 with our k1
  and b, close to but not the same as rank-bm25's idf.
- A build writes into a hidden folder beside DIR and renames it into place at the end,
  so a killed build leaves the old index (or none), never half of one; the next build
  removes what a dead builder left. An index whose source corpus has not changed is
  not rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
from array import array
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from engine.atomic import write_text
from engine.corpus import Passage, load_corpus, passage_from_row, sample_corpus_path
from engine.errors import ArtifactError, CorpusError, InputError
from engine.progress import ProgressCallback, check_cancel, report
from engine.retrieval.base import EMPTY_TOKEN, BM25Params, Hit, tokenize

if TYPE_CHECKING:
    import threading

    import numpy as np

    from engine.config import Settings
    from engine.retrieval import Retriever

MANIFEST = "prag-index.json"
PASSAGES = "passages.jsonl"
OFFSETS = "passages.offsets.npy"
BM25S_DIR = "bm25s"
FORMAT = 1
BACKENDS = ("auto", "bm25", "bm25s", "elasticsearch")
AUTO_BM25S_FROM = 100_000
"""`--backend auto` picks bm25s from this many passages on (rank-bm25 gets slow to open above)."""
_REPORT_EVERY = 2000


@dataclass
class IndexInfo:
    """The manifest of a built index (what `prag corpus info` shows)."""

    backend: str
    passages: int
    """Distinct passages indexed (duplicate ids are kept once, first wins, as `load_corpus` does)."""
    source: str
    """The corpus path it was built from."""
    source_size: int = 0
    source_mtime_ns: int = 0
    digest: str = ""
    """Hash of the sorted passage keys: the same corpus gives the same digest whatever the backend."""
    terms: int = 0
    """Distinct terms (bm25s)."""
    tokens: int = 0
    """Terms over all passages, after stop words (bm25s)."""
    params: dict[str, float] = field(default_factory=lambda: asdict(BM25Params()))
    build_s: float = 0.0
    bytes: int = 0
    """Size of the index folder on disk."""
    es_url: str | None = None
    es_index: str | None = None
    format: int = FORMAT
    created: str = ""
    reused: bool = False
    """Set by `build_index` when an up-to-date index was found and nothing was rebuilt (not stored)."""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("reused")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "IndexInfo":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "reused"}
        return cls(**known)


# --- reading corpora as a stream --------------------------------------------------------------


def resolve_corpus(path: Path | None) -> Path:
    path = Path(path).expanduser() if path is not None else sample_corpus_path()
    if not path.exists():
        raise CorpusError(f"corpus {path} does not exist", "pass --corpus with a JSONL file or a folder of .txt files")
    return path


def count_lines(path: Path) -> int:
    """Newline count of a file, read in 8 MB blocks (a progress bar's total, not a passage count)."""
    lines = 0
    last = b"\n"
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 23), b""):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (last != b"\n")


def iter_passages(path: Path) -> Iterator[Passage]:
    """Passages of a JSONL corpus one line at a time (a folder of .txt is read whole: those are small).

    Same rules and messages as `engine.corpus.load_corpus`, without holding the file in memory.
    """
    if path.is_dir():
        yield from load_corpus(path)
        return
    with open(path, "rb") as fh:
        if b"\x00" in fh.read(4096):
            raise CorpusError(f"{path} looks binary, not text", "pass a JSONL file or a folder of .txt files")
        fh.seek(0)
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                raise CorpusError(f"{path}:{number} is not UTF-8", "re-encode the file as UTF-8") from None
            except json.JSONDecodeError as exc:
                raise CorpusError(f"{path}:{number} is not valid JSON ({exc.msg})", "fix or remove that line") from None
            yield passage_from_row(row, f"{path}:{number}")


@dataclass
class CorpusStats:
    """What `prag corpus info` shows for a corpus file or folder."""

    path: str
    passages: int
    duplicates: int
    """Lines whose id repeats an earlier one (dropped when indexing)."""
    characters: int
    tokens: int
    """Terms after stop words, as BM25 sees them."""
    bytes: int


def corpus_stats(path: Path | None, progress: ProgressCallback | None = None) -> CorpusStats:
    path = resolve_corpus(path)
    total = None if path.is_dir() else count_lines(path)
    seen: set[str] = set()
    duplicates = characters = tokens = 0
    for number, passage in enumerate(iter_passages(path), start=1):
        if passage.id in seen:
            duplicates += 1
            continue
        seen.add(passage.id)
        characters += len(passage.title) + len(passage.text)
        tokens += len(tokenize(f"{passage.title} {passage.text}"))
        if number % _REPORT_EVERY == 0:
            report(progress, "Reading corpus", number, total)
    report(progress, "Reading corpus", len(seen) + duplicates, len(seen) + duplicates)
    size = sum(p.stat().st_size for p in path.rglob("*.txt")) if path.is_dir() else path.stat().st_size
    return CorpusStats(str(path), len(seen), duplicates, characters, tokens, size)


# --- the passage store: one JSONL line per passage, read by offset ---------------------------


class PassageFile:
    """Passages of an index by position, read lazily: an offsets array (memory-mapped) and one pread per passage."""

    def __init__(self, folder: Path) -> None:
        import numpy as np

        self.path = Path(folder) / PASSAGES
        try:
            self.offsets = np.load(Path(folder) / OFFSETS, mmap_mode="r")
            self._fd = os.open(self.path, os.O_RDONLY)
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"index {folder} has no readable passage file ({exc})", "build it again with `prag corpus index`") from None

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> Passage:
        if not 0 <= index < len(self):
            raise IndexError(index)
        start, end = int(self.offsets[index]), int(self.offsets[index + 1])
        row = json.loads(os.pread(self._fd, end - start, start))
        return Passage(row["id"], row["title"], row["text"])

    def __iter__(self) -> Iterator[Passage]:
        for index in range(len(self)):
            yield self[index]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        try:
            self.close()
        except (OSError, AttributeError):
            pass


# --- building --------------------------------------------------------------------------------


def _okapi_idf(df: "np.ndarray", n_docs: int, epsilon: float) -> "np.ndarray":
    """rank-bm25 `BM25Okapi._calc_idf`, vectorized: (V,) document frequencies -> (V,) idf."""
    import numpy as np

    idf = np.log(n_docs - df + 0.5) - np.log(df + 0.5)
    floor = epsilon * float(idf.mean()) if len(idf) else 0.0
    return np.where(idf < 0, floor, idf)


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
        idf = _okapi_idf(df.astype(np.float64), n_docs, self.params.epsilon).astype(np.float32)
        k1, b = self.params.k1, self.params.b
        norm = (k1 * (1 - b + b * lengths / lengths.mean())).astype(np.float32)  # (N,)
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
            score = idf[t] * (tf * (k1 + 1) / (tf + norm[doc]))  # BM25Okapi's term score
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


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _share(folder: Path) -> None:
    """Atomic writes create 0600 temp files; an index is read by every node and user that may read the folder."""
    umask = os.umask(0)
    os.umask(umask)
    for path in folder.rglob("*"):
        if path.is_file():
            path.chmod(0o666 & ~umask)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_dead_builds(out: Path) -> None:
    """Clean up after killed builders: drop their `.<name>.building-<pid>` folders; an `.<name>.old-<pid>`
    left between the two renames of the swap is the previous index: put it back if nothing replaced it."""
    for leftover in sorted(out.parent.glob(f".{out.name}.building-*")) + sorted(out.parent.glob(f".{out.name}.old-*")):
        try:
            pid = int(leftover.name.rsplit("-", 1)[1])
        except ValueError:
            continue
        if _pid_alive(pid):
            continue
        if ".old-" in leftover.name and not out.exists():
            leftover.rename(out)
        else:
            shutil.rmtree(leftover, ignore_errors=True)


def read_info(folder: Path) -> IndexInfo:
    path = Path(folder).expanduser() / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{folder} is not a prag index (no {MANIFEST})", "build one with `prag corpus index --out DIR`")
    try:
        info = IndexInfo.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, TypeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"index manifest {path} is unreadable ({exc})", "build the index again with --force") from None
    if info.format != FORMAT:
        raise ArtifactError(f"index {folder} has format {info.format}; this version reads {FORMAT}", "build it again with --force")
    return info


def _up_to_date(out: Path, source: Path, backend: str, params: BM25Params) -> IndexInfo | None:
    try:
        info = read_info(out)
    except ArtifactError:
        return None
    stat = source.stat()
    same_source = info.source == str(source.resolve()) and info.source_size == stat.st_size and info.source_mtime_ns == stat.st_mtime_ns
    if source.is_dir() or not same_source or info.backend != backend or info.params != asdict(params):
        return None
    info.reused = True
    return info


def choose_backend(backend: str, passages: int) -> str:
    if backend not in BACKENDS:
        raise InputError(f"unknown index backend {backend!r}", f"choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "bm25s" if passages >= AUTO_BM25S_FROM else "bm25"
    return backend


def build_index(
    corpus: Path | None,
    out: Path,
    backend: str = "bm25s",
    params: BM25Params = BM25Params(),
    progress: ProgressCallback | None = None,
    cancel: "threading.Event | None" = None,
    force: bool = False,
) -> IndexInfo:
    """Build (or find up to date) a bm25 / bm25s index folder of a corpus.

    Args:
        corpus: JSONL file or folder of .txt; None = the sample corpus.
        out: the index folder; replaced only when the build finished.
        backend: "bm25", "bm25s" or "auto" (bm25s from `AUTO_BM25S_FROM` passages on).
        params: BM25 parameters (rank-bm25's defaults; keep them for bm25/bm25s parity).
        progress: "Indexing passages" (done/total lines), then "Writing index" (steps).
        cancel: set it to stop; nothing is left behind and the old index stays.
        force: rebuild even when the index is up to date with the corpus.
    """
    source = resolve_corpus(corpus)
    out = Path(out).expanduser()
    if out.exists() and not (out / MANIFEST).is_file():
        raise InputError(f"{out} exists and is not a prag index", "pass --out with a new folder name, or delete that folder")
    if backend == "elasticsearch":
        raise InputError("build_index writes bm25 / bm25s folders", "use build_es_index for Elasticsearch")
    total = None if source.is_dir() else count_lines(source)
    chosen = choose_backend(backend, total or 0)  # a folder of .txt (no line count) is small: bm25
    if not force:
        existing = _up_to_date(out, source, chosen, params)
        if existing is not None:
            return existing
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_builds(out)
    work = out.parent / f".{out.name}.building-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    started = time.perf_counter()
    try:
        info = _build_into(work, source, chosen, params, total, progress, cancel)
        info.build_s = time.perf_counter() - started
        info.bytes = _folder_bytes(work)
        write_text(work / MANIFEST, json.dumps(info.to_json(), indent=2) + "\n")
        _share(work)
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
            work.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            work.rename(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return info


def _build_into(work: Path, source: Path, backend: str, params: BM25Params, total: int | None,
                progress: ProgressCallback | None, cancel: "threading.Event | None") -> IndexInfo:
    import numpy as np

    label = "Indexing passages"
    builder = _BM25SBuilder(params) if backend == "bm25s" else None
    offsets = array("q", [0])
    keys: list[str] = []
    seen: set[str] = set()
    report(progress, label, 0, total)
    lines = 0
    with open(work / PASSAGES, "wb") as fh:
        for passage in iter_passages(source):
            lines += 1
            if lines % _REPORT_EVERY == 0:
                check_cancel(cancel)
                report(progress, label, lines, total)
            if passage.id in seen:
                continue
            seen.add(passage.id)
            line = json.dumps({"id": passage.id, "title": passage.title, "text": passage.text}, ensure_ascii=False).encode("utf-8") + b"\n"
            fh.write(line)
            offsets.append(offsets[-1] + len(line))
            keys.append(passage.key)
            if builder is not None:
                builder.add(passage)
        fh.flush()
        os.fsync(fh.fileno())
    if not keys:
        raise CorpusError(f"corpus {source} has no passages", "add JSONL lines with a \"text\" field or .txt files")
    report(progress, label, total or lines, total or lines)
    del seen
    steps = 3 if builder is not None else 2
    report(progress, "Writing index", 0, steps)
    np.save(work / OFFSETS, np.frombuffer(offsets, dtype=np.int64))
    del offsets
    keys.sort()
    digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:12]
    report(progress, "Writing index", 1, steps)
    terms = tokens = 0
    if builder is not None:
        check_cancel(cancel)
        terms, tokens = builder.save(work / BM25S_DIR)
        report(progress, "Writing index", 2, steps)
    stat = source.stat()
    report(progress, "Writing index", steps, steps)
    return IndexInfo(
        backend=backend, passages=len(keys), source=str(source.resolve()), source_size=stat.st_size, source_mtime_ns=stat.st_mtime_ns,
        digest=digest, terms=terms, tokens=tokens, params=asdict(params), created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )


# --- opening ---------------------------------------------------------------------------------


def _hits(passages: Sequence[Passage], scores: Sequence[float], query_terms: Sequence[str]) -> list[Hit]:
    """Hits in the given order, stopping at the first passage that shares no term with the query (as BM25Retriever)."""
    unique = list(dict.fromkeys(query_terms))
    hits = []
    for rank, (passage, score) in enumerate(zip(passages, scores), start=1):
        present = set(tokenize(f"{passage.title} {passage.text}"))
        matched = tuple(t for t in unique if t in present)
        if not matched:
            break
        hits.append(Hit(passage, float(score), rank, matched))
    return hits


class BM25SRetriever:
    """Okapi BM25 from a saved bm25s index, memory-mapped; passages read from disk per hit."""

    def __init__(self, folder: Path, info: IndexInfo | None = None, mmap: bool = True) -> None:
        import bm25s

        self.folder = Path(folder)
        self.info = info or read_info(self.folder)
        try:
            self._bm25 = bm25s.BM25.load(str(self.folder / BM25S_DIR), mmap=mmap, load_corpus=False)
        except (OSError, ValueError, KeyError) as exc:
            raise ArtifactError(f"bm25s index in {folder} is unreadable ({exc})", "build it again with `prag corpus index --force`") from None
        self.passages = PassageFile(self.folder)
        self.digest = self.info.digest

    def __len__(self) -> int:
        return len(self.passages)

    def scores(self, terms: Sequence[str]) -> "np.ndarray":
        """(N,) BM25 score of every passage for the (tokenized) query."""
        import numpy as np

        ids = [self._bm25.vocab_dict[t] for t in terms if t in self._bm25.vocab_dict]
        if not ids:
            return np.zeros(len(self), dtype=np.float32)
        return self._bm25.get_scores_from_ids(ids)

    def search(self, query: str, k: int) -> list[Hit]:
        from engine.retrieval import top_k_indices

        if k < 1:
            raise InputError(f"top-k must be at least 1, got {k}", "pass --top-k 1 or more")
        terms = tokenize(query)
        if not terms:
            return []
        scores = self.scores(terms)
        order = top_k_indices(scores, k)
        return _hits([self.passages[i] for i in order], [float(scores[i]) for i in order], terms)


def open_bm25(folder: Path, info: IndexInfo) -> "Retriever":
    """Backend bm25: the index's stored passages in a rank-bm25 `BM25Retriever`, built in memory on open."""
    from engine.retrieval import BM25Retriever

    store = PassageFile(Path(folder))
    retriever = BM25Retriever(list(store))
    store.close()
    retriever.digest = info.digest  # type: ignore[attr-defined]
    return retriever


def open_index(folder: Path) -> "Retriever":
    """The retriever of a built index folder (bm25, bm25s or a pointer to an Elasticsearch index)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir() and folder.parent.is_dir():
        _remove_dead_builds(folder)  # a builder killed mid-swap leaves the previous index beside it
    if not folder.is_dir():
        raise ArtifactError(f"index {folder} does not exist", "build it with `prag corpus index --corpus PATH --out DIR`")
    info = read_info(folder)
    if info.backend == "bm25s":
        return BM25SRetriever(folder, info)
    if info.backend == "bm25":
        return open_bm25(folder, info)
    if info.backend == "elasticsearch":
        return ElasticsearchRetriever(es_url(None, info.es_url), info.es_index or "")
    raise ArtifactError(f"index {folder} has unknown backend {info.backend!r}", "build it again with `prag corpus index --force`")


def open_configured_index(settings: "Settings") -> "Retriever | None":
    """`settings.index` or `settings.es_index` as a retriever (they win over `settings.corpus`); None = BM25 over the corpus."""
    if settings.index is not None and settings.es_index is not None:
        raise InputError("both an index folder and an Elasticsearch index are set", "pass only one of --index and --es-index")
    if settings.index is not None:
        return open_index(settings.index)
    if settings.es_index is not None:
        return ElasticsearchRetriever(es_url(settings.es_url), settings.es_index)
    return None


# --- Elasticsearch ---------------------------------------------------------------------------

ES_TERMS_FIELD = "terms"
"""Our tokens, space-joined, analyzed by whitespace only: ES matches exactly the terms BM25 does."""


def es_url(url: str | None, fallback: str | None = None) -> str:
    """Flag or config value, then `PRAG_ES_URL`, then what the index manifest recorded."""
    chosen = url or os.environ.get("PRAG_ES_URL") or fallback
    if not chosen:
        raise InputError("no Elasticsearch URL", "pass --es-url http://host:9200 or set PRAG_ES_URL")
    return chosen


def _es_client(url: str):
    try:
        from elasticsearch import Elasticsearch
    except ImportError:
        raise InputError("the Elasticsearch backend needs the `elasticsearch` package", "pip install 'prag-explorer[es]'") from None
    return Elasticsearch(url, request_timeout=60, retry_on_timeout=True, max_retries=3)


def _es_errors():
    from elasticsearch import ApiError, TransportError

    return (ApiError, TransportError)


def es_index_body(params: BM25Params) -> dict[str, Any]:
    """Settings and mappings: BM25 with our k1 and b; title and text stored, only `terms` searched."""
    return {
        "settings": {"index": {"similarity": {"default": {"type": "BM25", "k1": params.k1, "b": params.b}}}},
        "mappings": {
            "dynamic": "strict",
            "properties": {
                "id": {"type": "keyword"},
                "key": {"type": "keyword"},
                "title": {"type": "text", "index": False},
                "text": {"type": "text", "index": False},
                ES_TERMS_FIELD: {"type": "text", "analyzer": "whitespace"},
            },
        },
    }


def build_es_index(
    corpus: Path | None,
    name: str,
    url: str | None = None,
    params: BM25Params = BM25Params(),
    progress: ProgressCallback | None = None,
    cancel: "threading.Event | None" = None,
    out: Path | None = None,
    chunk_size: int = 1000,
) -> IndexInfo:
    """Index a corpus into Elasticsearch under the alias `name`, swapped atomically when complete.

    Documents go into a fresh concrete index `<name>-<timestamp>`; only when every
    document is in and refreshed does the alias `name` move to it (one
    `update_aliases` call), and the index it pointed to before is deleted. A killed
    build leaves the old alias answering. `out`, when given, gets a small index folder
    pointing at the alias, so `prag ask --index DIR` works the same for every backend.
    """
    source = resolve_corpus(corpus)
    if out is not None and Path(out).expanduser().exists() and not (Path(out).expanduser() / MANIFEST).is_file():
        raise InputError(f"{out} exists and is not a prag index", "pass --out with a new folder name")
    url = es_url(url)
    client = _es_client(url)
    errors = _es_errors()
    from elasticsearch.helpers import streaming_bulk
    concrete = f"{name}-{time.strftime('%Y%m%d%H%M%S', time.gmtime())}-{os.getpid()}"
    total = None if source.is_dir() else count_lines(source)
    label = "Indexing passages (Elasticsearch)"
    keys: list[str] = []
    seen: set[str] = set()
    started = time.perf_counter()

    def actions() -> Iterator[dict[str, Any]]:
        for passage in iter_passages(source):
            if passage.id in seen:
                continue
            seen.add(passage.id)
            keys.append(passage.key)
            yield {"_index": concrete, "_id": passage.id, "_source": {
                "id": passage.id, "key": passage.key, "title": passage.title, "text": passage.text,
                ES_TERMS_FIELD: " ".join(tokenize(f"{passage.title} {passage.text}") or [EMPTY_TOKEN]),
            }}

    try:
        if client.indices.exists(index=name) and not client.indices.exists_alias(name=name):
            raise InputError(f"Elasticsearch already has a concrete index named {name!r}", "choose another --es-index, or delete that index")
        client.indices.create(index=concrete, **es_index_body(params))
        try:
            done = 0
            report(progress, label, 0, total)
            for ok, item in streaming_bulk(client, actions(), chunk_size=chunk_size, raise_on_error=False):
                if not ok:
                    raise ArtifactError(f"Elasticsearch refused a passage: {item}", "check the server's log")
                done += 1
                if done % _REPORT_EVERY == 0:
                    check_cancel(cancel)
                    report(progress, label, done, total)
            client.indices.refresh(index=concrete)
            old = list(client.indices.get_alias(name=name).keys()) if client.indices.exists_alias(name=name) else []
            swap = [{"remove": {"index": o, "alias": name}} for o in old] + [{"add": {"index": concrete, "alias": name}}]
            client.indices.update_aliases(actions=swap)
        except BaseException:
            try:  # the half-built index goes; the alias still points at the previous one
                client.indices.delete(index=concrete, ignore_unavailable=True)
            except errors:
                pass
            raise
        for o in old:
            client.indices.delete(index=o, ignore_unavailable=True)
        report(progress, label, total or done, total or done)
    except errors as exc:
        raise ArtifactError(f"Elasticsearch at {_without_credentials(url)} failed: {exc}",
                            "check --es-url / PRAG_ES_URL and that the server is up") from None
    keys.sort()
    stat = source.stat()
    info = IndexInfo(
        backend="elasticsearch", passages=len(keys), source=str(source.resolve()), source_size=stat.st_size,
        source_mtime_ns=stat.st_mtime_ns, digest=hashlib.sha256("\n".join(keys).encode()).hexdigest()[:12],
        params=asdict(params), build_s=time.perf_counter() - started, es_url=_without_credentials(url), es_index=name,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    if out is not None:
        out = Path(out).expanduser()
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / MANIFEST, json.dumps(info.to_json(), indent=2) + "\n")
    return info


def _without_credentials(url: str) -> str:
    """Never write a password into a manifest: drop `user:pass@` from the URL."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit(parts._replace(netloc=netloc))
    return url


class ElasticsearchRetriever:
    """BM25 search in an Elasticsearch index (or alias) built by `build_es_index`."""

    def __init__(self, url: str, index: str) -> None:
        if not index:
            raise InputError("no Elasticsearch index name", "pass --es-index NAME")
        self.url, self.index = url, index
        self.client = _es_client(url)
        self._errors = _es_errors()
        try:
            if not self.client.indices.exists(index=index):
                raise ArtifactError(f"Elasticsearch at {_without_credentials(url)} has no index {index!r}",
                                    "build it with `prag corpus index --backend elasticsearch --es-index NAME`")
            self._count = int(self.client.count(index=index)["count"])
        except self._errors as exc:
            raise ArtifactError(f"cannot reach Elasticsearch at {_without_credentials(url)}: {exc}",
                                "check --es-url / PRAG_ES_URL and that the server is up") from None
        self.digest = f"es:{index}:{self._count}"

    def __len__(self) -> int:
        return self._count

    def search(self, query: str, k: int) -> list[Hit]:
        if k < 1:
            raise InputError(f"top-k must be at least 1, got {k}", "pass --top-k 1 or more")
        terms = tokenize(query)
        if not terms:
            return []
        try:
            response = self.client.search(index=self.index, query={"match": {ES_TERMS_FIELD: " ".join(terms)}}, size=k,
                                          source_includes=["id", "title", "text"])
        except self._errors as exc:
            raise ArtifactError(f"Elasticsearch search failed: {exc}", "check that the server is up") from None
        rows = response["hits"]["hits"]
        passages = [Passage(r["_source"]["id"], r["_source"]["title"], r["_source"]["text"]) for r in rows]
        return _hits(passages, [float(r["_score"] or 0.0) for r in rows], terms)


def index_or_es_info(folder: Path) -> IndexInfo:
    """The manifest; for an Elasticsearch pointer, with the live document count."""
    info = read_info(folder)
    if info.backend == "elasticsearch":
        info.passages = len(ElasticsearchRetriever(es_url(None, info.es_url), info.es_index or ""))
    return info
