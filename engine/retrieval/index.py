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

import json
import os
import shutil
import time
from array import array
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from engine.atomic import write_text
from engine.errors import ArtifactError, CorpusError, InputError
from engine.progress import ProgressCallback, check_cancel, report
from engine.retrieval.base import BM25Params, Retriever
from engine.retrieval.bm25 import BM25Retriever
from engine.retrieval.layout import (
    BM25S_DIR,
    MANIFEST,
    OFFSETS,
    PASSAGES,
    REPORT_EVERY,
    IndexInfo,
    PassageFile,
    corpus_digest,
    count_lines,
    iter_passages,
    read_info,
    resolve_corpus,
)

if TYPE_CHECKING:
    import threading

    from engine.config import Settings

BACKENDS = ("auto", "bm25", "bm25s", "elasticsearch")
AUTO_BM25S_FROM = 100_000
"""`--backend auto` picks bm25s from this many passages on (rank-bm25 gets slow to open above)."""

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
    cancel: threading.Event | None = None,
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
                progress: ProgressCallback | None, cancel: threading.Event | None) -> IndexInfo:
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


def open_configured_index(settings: Settings) -> Retriever | None:
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
