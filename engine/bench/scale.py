"""Retrieval and encoding as the corpus grows: BM25 over 10k passages, bm25s over a million
synthetic ones (build, open, query), and encoding on 1 and 2 Ray workers.

Corpora are synthetic with natural-text word statistics, so the run needs no download and
its size is a parameter.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import time
from pathlib import Path

from engine.bench.figures import Figure, subprocess_json
from engine.bench.offline import benchmark_records
from engine.progress import ProgressCallback, report


def bench_bm25(passages: int = 10_000, queries: int = 50, seed: int = 0) -> Figure:
    from engine.corpus import make_passage
    from engine.retrieval import BM25Retriever

    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(20_000)]
    corpus = [make_passage(" ".join(rng.choices(vocab, k=60)), f"doc {i}") for i in range(passages)]
    retriever = BM25Retriever(corpus)
    asks = [" ".join(rng.choices(vocab, k=6)) for _ in range(queries)]
    samples = []
    for query in asks:
        start = time.perf_counter()
        retriever.search(query, 3)
        samples.append(time.perf_counter() - start)
    return Figure("bm25_query_ms_10k", statistics.median(samples) * 1000, "ms", 20.0,
                  f"median of {queries} queries, {passages} synthetic passages")


def write_synthetic_corpus(path: Path, passages: int, words: int = 100, vocab: int = 50_000, seed: int = 0,
                           progress: ProgressCallback | None = None) -> Path:
    """A JSONL corpus of `passages` passages of `words` Zipf-distributed words (DPR-sized: 100 words each).

    Word ranks follow 1/rank, as in natural text, so a few terms are in most passages
    (long posting lists, the slow case for a query) and most are rare. Titles are
    unique ("Passage 123"), so the vocabulary grows with the corpus as a real one does.
    Written to a temp file and renamed, so an interrupted run never leaves half a corpus.
    """
    import numpy as np

    from engine.atomic import atomic_open

    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, vocab + 1)
    cumulative = np.cumsum(weights / weights.sum())
    names = np.array([f"w{i}" for i in range(vocab)], dtype=object)
    chunk = 10_000
    with atomic_open(Path(path), "w") as fh:
        for start in range(0, passages, chunk):
            count = min(chunk, passages - start)
            ranks = np.minimum(np.searchsorted(cumulative, rng.random((count, words))), vocab - 1)
            lines = [json.dumps({"title": f"Passage {start + i}", "text": " ".join(names[row])}) for i, row in enumerate(ranks)]
            fh.write("\n".join(lines) + "\n")
            report(progress, "Writing synthetic corpus", start + count, passages)
    return Path(path)


def synthetic_queries(count: int, words: int = 6, vocab: int = 50_000, seed: int = 1) -> list[str]:
    """Questions drawn from the corpus's own word distribution: common terms (long posting lists) included."""
    import numpy as np

    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, vocab + 1)
    cumulative = np.cumsum(weights / weights.sum())
    ranks = np.minimum(np.searchsorted(cumulative, rng.random((count, words))), vocab - 1)
    return [" ".join(f"w{r}" for r in row) for row in ranks]


def bench_bm25s_scale(workdir: Path, passages: int = 1_000_000, queries: int = 50,
                      progress: ProgressCallback | None = None) -> list[Figure]:
    """Build a bm25s index of a synthetic corpus in a fresh process (time, peak memory), then open and query it."""
    from engine.retrieval.index import open_index

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    corpus = workdir / f"synthetic-{passages}.jsonl"
    if not corpus.is_file():
        write_synthetic_corpus(corpus, passages, progress=progress)
    out = workdir / f"synthetic-{passages}.bm25s"
    code = f"""
import json, resource, time
from pathlib import Path
from engine.retrieval.index import build_index
start = time.perf_counter()
info = build_index(Path({str(corpus)!r}), Path({str(out)!r}), "bm25s", force=True)
print(json.dumps({{"s": time.perf_counter() - start, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "bytes": info.bytes, "terms": info.terms, "passages": info.passages}}))
"""
    report(progress, "Benchmark: bm25s scale", 0, 3, f"building over {passages:,} passages")
    built = subprocess_json(code, timeout=3600)
    report(progress, "Benchmark: bm25s scale", 1, 3, "opening")
    start = time.perf_counter()
    index = open_index(out)
    open_s = time.perf_counter() - start
    asks = synthetic_queries(queries)
    index.search(asks[0], 3)  # first touch of the mapped pages
    report(progress, "Benchmark: bm25s scale", 2, 3, "querying")
    samples = []
    for query in asks:
        start = time.perf_counter()
        index.search(query, 3)
        samples.append(time.perf_counter() - start)
    report(progress, "Benchmark: bm25s scale", 3, 3)
    samples.sort()
    p95 = samples[min(len(samples) - 1, int(0.95 * len(samples)))]
    size = f"{built['passages']:,} synthetic passages of 100 words, {built['terms']:,} terms"
    matrix = sum(p.stat().st_size for p in (out / "bm25s").iterdir())
    return [
        Figure("bm25s_build_s", built["s"], "s", None, f"{size}; tokenize, score, write (fresh process)"),
        Figure("bm25s_build_peak_rss_mb", built["rss_mb"], "MB", None, "peak memory of the build process"),
        Figure("bm25s_index_mb", built["bytes"] / 1e6, "MB", None, f"on disk: BM25 matrix {matrix / 1e6:.0f} MB + passages and offsets"),
        Figure("bm25s_open_s", open_s, "s", 2.0, "memory-mapped load: matrix, vocabulary, offsets"),
        Figure("bm25s_query_ms", statistics.median(samples) * 1000, "ms", 100.0,
               f"median of {queries} 6-word queries from the corpus distribution, top-3 with passages read; p95 {p95 * 1000:.0f} ms"),
    ]


def bench_ray_encode(workdir: Path, passages: int = 6, widths: tuple[int, ...] = (1, 2), models_dir: Path | None = None,
                     progress: ProgressCallback | None = None) -> list[Figure]:
    """Encode the same passages into a fresh store with 1 and with 2 Ray workers; passages per minute and the ratio.

    The rate counts from the first passage handed out to the last one stored, so cluster
    start and each worker's model load (reported separately) do not dilute it.
    """
    from engine.config import load_settings
    from engine.distributed import RayOptions, encode_on_ray

    cores = os.cpu_count() or 1
    records = benchmark_records(passages)
    rates: dict[int, float] = {}
    walls: dict[int, float] = {}
    cpu: dict[int, float] = {}
    load: dict[int, float] = {}
    for step, width in enumerate(widths):
        overrides: dict = {"store": str(Path(workdir) / f"ray-store-{width}w-{time.time_ns()}")}
        if models_dir is not None:
            overrides["model_cache"] = str(models_dir)
        start = time.perf_counter()
        summary = encode_on_ray(records, load_settings(overrides), ray_options=RayOptions(workers=width))
        walls[width] = time.perf_counter() - start
        rates[width] = 60 * summary.encoded / summary.seconds if summary.seconds else 0.0
        cpu[width] = summary.cpu_seconds_per_passage
        load[width] = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        report(progress, "Benchmark: encode on Ray", step + 1, len(widths), f"{width} workers: {rates[width]:.1f} passages/min")
    figures = [Figure(f"ray_encode_ppm_{w}w", rates[w], "passages/min", None,
                      f"{passages} passages, 5 steps each; {cpu[w]:.1f} CPU s/passage per worker; {walls[w]:.0f} s with cluster "
                      f"start and model loads; load average {load[w]:.1f} on {cores} cores") for w in widths]
    if len(widths) >= 2 and cpu[widths[0]]:
        figures.append(Figure(f"ray_encode_cpu_per_passage_{widths[-1]}w_vs_{widths[0]}w", cpu[widths[-1]] / cpu[widths[0]], "ratio", 1.2,
                              "CPU seconds per passage, wider / narrower: Ray adds no work per passage (machine-independent)"))
    if len(widths) >= 2 and rates[widths[0]]:
        figures.append(Figure(f"ray_encode_{widths[-1]}w_vs_{widths[0]}w", rates[widths[-1]] / rates[widths[0]], "ratio", None,
                              f"throughput ratio on {cores} cores (ideal {widths[-1] / widths[0]:g} when each worker has a free core)"))
    return figures
