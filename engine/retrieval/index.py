"""Retrieval indexes built once and opened many times: beyond what fits in one BM25 object.

`BM25Retriever` tokenizes the whole corpus into Python objects every time the
explorer opens: fine for the sample corpus, minutes and gigabytes at a million
passages. An index is built once by `prag corpus index` and then opened in well
under a second:

    DIR/prag-index.json          manifest (backend, counts, BM25 parameters, source corpus)
    DIR/passages.jsonl           {"id","title","text"} per passage, in index order
    DIR/passages.offsets.npy     int64 byte offset of every line, plus the file size (N + 1)
    DIR/bm25s/*                  bm25s's own saved layout (backend bm25s only, see `engine.retrieval.bm25s`)

This module is that folder format, shared by the backends; each backend's scoring
lives in its own module (`bm25`, `bm25s`, `elastic`), which this one imports only
when an index of that kind is built or opened. Why each piece:

- Passages stay on disk. A hit reads its one line with `os.pread` at the offset
  the memory-mapped offsets array gives, so answering from 10M passages costs the
  offsets (80 MB, mapped, not read) and nothing per passage.
- A build writes into a hidden folder beside DIR and renames it into place at the end,
  so a killed build leaves the old index (or none), never half of one; the next build
  removes what a dead builder left. An index whose source corpus has not changed is
  not rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from array import array
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from engine.atomic import write_text
from engine.corpus import Passage, load_corpus, passage_from_row, sample_corpus_path
from engine.errors import ArtifactError, CorpusError, InputError
from engine.progress import ProgressCallback, check_cancel, report
from engine.retrieval.base import BM25Params, Retriever, tokenize
from engine.retrieval.bm25 import BM25Retriever

if TYPE_CHECKING:
    import threading

    from engine.config import Settings

MANIFEST = "prag-index.json"
PASSAGES = "passages.jsonl"
OFFSETS = "passages.offsets.npy"
BM25S_DIR = "bm25s"
"""The bm25s backend's files, inside the index folder."""
FORMAT = 1
BACKENDS = ("auto", "bm25", "bm25s", "elasticsearch")
AUTO_BM25S_FROM = 100_000
"""`--backend auto` picks bm25s from this many passages on (rank-bm25 gets slow to open above)."""
REPORT_EVERY = 2000
"""Passages between two progress reports (and cancel checks) while reading a corpus."""


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
        if number % REPORT_EVERY == 0:
            report(progress, "Reading corpus", number, total)
    report(progress, "Reading corpus", len(seen) + duplicates, len(seen) + duplicates)
    size = sum(p.stat().st_size for p in path.rglob("*.txt")) if path.is_dir() else path.stat().st_size
    return CorpusStats(str(path), len(seen), duplicates, characters, tokens, size)


def corpus_digest(keys: list[str]) -> str:
    """Hash of the passage keys in sorted order, so every backend gives a corpus the same digest.

    Sorts `keys` in place: at 10M passages a sorted copy would be another list of that size.
    """
    keys.sort()
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:12]


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

    from engine.retrieval.bm25s import _BM25SBuilder

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
            if lines % REPORT_EVERY == 0:
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
    digest = corpus_digest(keys)
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


def open_bm25(folder: Path, info: IndexInfo) -> Retriever:
    """Backend bm25: the index's stored passages in a rank-bm25 `BM25Retriever`, built in memory on open."""
    store = PassageFile(Path(folder))
    retriever = BM25Retriever(list(store))
    store.close()
    retriever.digest = info.digest  # type: ignore[attr-defined]
    return retriever


def open_index(folder: Path) -> Retriever:
    """The retriever of a built index folder (bm25, bm25s or a pointer to an Elasticsearch index)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir() and folder.parent.is_dir():
        _remove_dead_builds(folder)  # a builder killed mid-swap leaves the previous index beside it
    if not folder.is_dir():
        raise ArtifactError(f"index {folder} does not exist", "build it with `prag corpus index --corpus PATH --out DIR`")
    info = read_info(folder)
    if info.backend == "bm25s":
        from engine.retrieval.bm25s import BM25SRetriever

        return BM25SRetriever(folder, info)
    if info.backend == "bm25":
        return open_bm25(folder, info)
    if info.backend == "elasticsearch":
        from engine.retrieval.elastic import ElasticsearchRetriever, es_url

        return ElasticsearchRetriever(es_url(None, info.es_url), info.es_index or "")
    raise ArtifactError(f"index {folder} has unknown backend {info.backend!r}", "build it again with `prag corpus index --force`")


def open_configured_index(settings: "Settings") -> Retriever | None:
    """`settings.index` or `settings.es_index` as a retriever (they win over `settings.corpus`); None = BM25 over the corpus."""
    if settings.index is not None and settings.es_index is not None:
        raise InputError("both an index folder and an Elasticsearch index are set", "pass only one of --index and --es-index")
    if settings.index is not None:
        return open_index(settings.index)
    if settings.es_index is not None:
        from engine.retrieval.elastic import ElasticsearchRetriever, es_url

        return ElasticsearchRetriever(es_url(settings.es_url), settings.es_index)
    return None


def index_or_es_info(folder: Path) -> IndexInfo:
    """The manifest; for an Elasticsearch pointer, with the live document count."""
    info = read_info(folder)
    if info.backend == "elasticsearch":
        from engine.retrieval.elastic import ElasticsearchRetriever, es_url

        info.passages = len(ElasticsearchRetriever(es_url(None, info.es_url), info.es_index or ""))
    return info
