"""Benchmarks: every performance target measured in one run and printed as a figure with its target.

Ratios are taken within one run on one machine (batched vs sequential, DyPRAG vs
vanilla) so they hold across machines; absolute figures (ms, s, MB) are what this
machine measured. Nothing here is a test: targets are reported, never asserted.
"""

from __future__ import annotations

import json
import os
import random
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from engine.progress import ProgressCallback, report


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    target: float | None = None
    """Upper bound the value should stay under; None = reported only."""
    note: str = ""

    @property
    def ok(self) -> bool | None:
        return None if self.target is None else self.value <= self.target

    def to_json(self) -> dict:
        return {"value": round(self.value, 4), "unit": self.unit, "target": self.target, "ok": self.ok, "note": self.note}


def _timed(fn: Callable[[], object], repeats: int) -> float:
    """Median wall seconds over `repeats` runs (after the caller's warm-up)."""
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


BENCH_QUESTION = "Who founded the harbour town of Velmora?"


def _prepare_explorer(explorer, question: str):
    """Give PRAG stored LoRAs and DyPRAG a translator for the benchmark passages, if missing."""
    from engine.adapters import random_adapter
    from engine.translator import ParameterTranslator, TranslatorConfig

    hits = explorer.retrieve(question, 3)
    notes = []
    for i, hit in enumerate(hits):
        if not explorer.store.has(hit.passage):
            explorer.store.put(hit.passage, random_adapter(explorer.loaded.arch, 2, 16.0, 0.001, seed=i))
            notes.append("random PRAG LoRAs (same shapes as trained ones)")
    if explorer.translator is None:
        explorer.translator = ParameterTranslator(TranslatorConfig(explorer.loaded.arch))
        notes.append("untrained translator (same shapes and cost as a trained one)")
    return hits, "; ".join(dict.fromkeys(notes))


def bench_generation(explorer, new_tokens: int, repeats: int, progress: ProgressCallback | None = None) -> list[Figure]:
    from engine.adapters import merge_sum
    from engine.inject import inject
    from engine.methods import parse_methods

    question = BENCH_QUESTION
    hits, note = _prepare_explorer(explorer, question)
    all_methods = parse_methods("all")

    def run(methods, tokens: int = new_tokens):
        comparison = explorer.compare(question, hits, methods, tokens, ignore_eos=True)
        bad = [a for a in comparison.answers if a.error or a.tokens != tokens]
        if bad:
            raise RuntimeError(f"benchmark row failed: {bad[0].method}: {bad[0].error or bad[0].tokens}")
        return comparison

    variants = {
        "batched": lambda: run(all_methods),
        "sequential": lambda: [run([m]) for m in all_methods],
        "rag": lambda: run(parse_methods("rag")),
        "vanilla": lambda: run(parse_methods("vanilla")),
        "dyprag": lambda: run(parse_methods("dyprag")),
        # One new token: the prompt prefill (plus adapter set-up), to tell which part batching cannot shrink.
        "batched_prefill": lambda: run(all_methods, 1),
        "sequential_prefill": lambda: [run([m], 1) for m in all_methods],
    }
    run(all_methods)  # warm-up: passage embeddings, allocator, kernels
    samples: dict[str, list[float]] = {name: [] for name in variants}
    # Interleaved rounds, so a burst of load from elsewhere hits every variant alike.
    for round_index in range(repeats):
        for name, fn in variants.items():
            samples[name].append(_timed(fn, 1))
        report(progress, "Benchmark: generation", round_index + 1, repeats)
    batched, sequential, rag, vanilla, dyprag, batched_prefill, sequential_prefill = (statistics.median(samples[n]) for n in variants)
    decode_ratio = (batched - batched_prefill) / max(sequential - sequential_prefill, 1e-9)

    passages = [h.passage for h in hits]

    def prag_ready():
        adapter = merge_sum([explorer.store.get(p) for p in passages])
        with inject(explorer.loaded.model, [adapter]):
            pass

    prag_ready()
    prag_ms = _timed(prag_ready, max(3, repeats * 3)) * 1000
    tokens = f"{new_tokens} new tokens per answer"
    return [
        Figure("batched_vs_sequential", batched / sequential, "ratio", 0.4, f"six methods in one pass / one after another, {tokens}"),
        Figure("batched_prefill_share", batched_prefill / batched, "ratio", None,
               f"of the batched pass, the prompt prefill (one new token): rows with different adapters share none of it "
               f"({batched_prefill:.2f} s batched vs {sequential_prefill:.2f} s one after another)"),
        Figure("batched_vs_sequential_decode", decode_ratio, "ratio", None,
               f"the decode loop alone (time beyond one token), batched / one after another, {tokens}"),
        Figure("batched_vs_one_rag", batched / rag, "ratio", None, f"six methods in one pass / one RAG answer, {tokens}"),
        Figure("six_methods_batched_s", batched, "s", None, tokens),
        Figure("dyprag_vs_vanilla", dyprag / vanilla, "ratio", 1.15, f"translate + merge + inject for top-3 included; {note}".strip("; ")),
        Figure("prag_load_merge_inject_ms", prag_ms, "ms", 50.0, "3 stored LoRAs: read, rank-concatenate, hook in and out"),
    ]


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
    return Figure("bm25_query_ms_10k", statistics.median(samples) * 1000, "ms", 20.0, f"median of {queries} queries, {passages} synthetic passages")


def _subprocess_json(code: str, timeout: int = 600) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env)
    if result.returncode != 0:
        raise RuntimeError(result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "subprocess failed")
    return json.loads(result.stdout.strip().splitlines()[-1])


def bench_model_load(models_dir: Path) -> Figure:
    code = f"""
import json, time
from transformers.utils import logging; logging.set_verbosity_error(); logging.disable_progress_bar()
from engine.models import load_model
from pathlib import Path
load_model(None, Path({str(models_dir)!r}))  # make sure the cache exists
start = time.perf_counter(); load_model(None, Path({str(models_dir)!r})); print(json.dumps({{"s": time.perf_counter() - start}}))
"""
    return Figure("model_load_from_cache_s", _subprocess_json(code)["s"], "s", 3.0, "safetensors cache + tokenizer, fresh process")


def bench_peak_rss(models_dir: Path, new_tokens: int, store: Path) -> Figure:
    code = f"""
import json, resource
from transformers.utils import logging; logging.set_verbosity_error(); logging.disable_progress_bar()
from engine.config import load_settings
from engine.explorer import Explorer
from engine.bench import _prepare_explorer, BENCH_QUESTION
from engine.methods import parse_methods
explorer = Explorer.open(load_settings({{"model_cache": {str(models_dir)!r}, "store": {str(store)!r}}}))
hits, _ = _prepare_explorer(explorer, BENCH_QUESTION)
explorer.compare(BENCH_QUESTION, hits, parse_methods("all"), {new_tokens}, ignore_eos=True)
print(json.dumps({{"mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""
    return Figure("peak_rss_mb_six_methods", _subprocess_json(code)["mb"], "MB", 2048.0, "one question, all six methods, fresh process")


def bench_storage(explorer, corpus_size: int, rank: int = 2) -> list[Figure]:
    from engine.models import MLP_MODULES
    from engine.translator import ParameterTranslator, TranslatorConfig

    if explorer.translator is not None:
        translator_bytes, note = explorer.translator.num_bytes(), "the loaded translator"
    else:
        translator_bytes = ParameterTranslator(TranslatorConfig(explorer.loaded.arch, rank=rank)).num_bytes()
        note = f"a translator of the default shape (p=2, rank {rank})"
    arch = explorer.loaded.arch
    one_lora = 4 * rank * arch.num_layers * sum(sum(arch.module_shape(m)) for m in MLP_MODULES)  # float32 A and B
    prag_bytes = one_lora * corpus_size
    return [
        Figure("translator_mb", translator_bytes / 1e6, "MB", 10.0, note),
        Figure("prag_store_vs_translator", prag_bytes / translator_bytes, "ratio", None,
               f"PRAG LoRAs for {corpus_size} passages ({prag_bytes / 1e6:.1f} MB, float32) / translator"),
    ]


def run_benchmarks(explorer, models_dir: Path, quick: bool = False, progress: ProgressCallback | None = None,
                   corpus_size: int | None = None, workdir: Path | None = None) -> list[Figure]:
    """Every target of the default run. `workdir` (a temp folder) receives the random LoRAs, the
    benchmark's encoded LoRAs and translator: they must never land in the user's store."""
    import tempfile

    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="prag-bench-") as tmp:
            return run_benchmarks(explorer, models_dir, quick, progress, corpus_size, Path(tmp))
    new_tokens, repeats = (16, 3) if quick else (32, 5)
    figures = bench_generation(explorer, new_tokens, repeats, progress)
    stage = "Benchmark: retrieval, storage, load, memory, TUI, offline stages"
    report(progress, stage, 0, 6)
    figures.append(bench_bm25(queries=20 if quick else 50))
    figures += bench_storage(explorer, corpus_size or len(explorer.retriever))
    report(progress, stage, 1, 6)
    figures.append(bench_model_load(models_dir))
    report(progress, stage, 2, 6)
    figures.append(bench_peak_rss(models_dir, new_tokens, explorer.store.root))
    report(progress, stage, 3, 6)
    figures += bench_tui_first_frame(repeats=3)
    report(progress, stage, 4, 6)
    figures.append(bench_key_latency(workdir / "tui-loras", samples=30 if quick else 60))
    report(progress, stage, 5, 6)
    figures += bench_offline_stages(explorer.loaded, workdir / "offline", quick, progress)
    report(progress, stage, 6, 6)
    return figures


# --- the TUI: first frame and key latency, each in a fresh process ---------------------------------


_ESCAPES = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[P^_][^\x1b]*\x1b\\|\x1b[()][0-9A-Za-z]|\x1b[@-Z\\-_=>78]")
"""Terminal control sequences (CSI, OSC, DCS, charset and two-byte escapes): stripped to read the screen's text."""
FIRST_FRAME_MARKERS = (b"prag-explorer", b"Ask a question", b"Vanilla", b"DyPRAG-combine", b"Help")
"""Text of the status line, the question box, the first and last answer cards and the key footer."""


def _time_first_frame(size: tuple[int, int], timeout_s: float) -> float:
    """Seconds from spawning `prag tui` on a new pseudo-terminal until its output holds every marker."""
    import fcntl
    import pty
    import select
    import signal
    import struct
    import termios

    master, slave = pty.openpty()
    columns, rows = size
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli.app", "tui"], stdin=slave, stdout=slave, stderr=slave,
                            env=env, start_new_session=True, close_fds=True)
    os.close(slave)
    output = b""
    try:
        while time.perf_counter() - start < timeout_s:
            ready, _, _ = select.select([master], [], [], 0.25)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 1 << 16)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
            screen = _ESCAPES.sub(b"", output)
            if all(marker in screen for marker in FIRST_FRAME_MARKERS):
                return time.perf_counter() - start
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)  # the model is still loading in a worker: nothing to save
        proc.wait(timeout=30)
        os.close(master)
    tail = _ESCAPES.sub(b"", output).decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
    raise RuntimeError(f"`prag tui` drew no complete first frame within {timeout_s:.0f} s (last output: {tail[0][:120]!r})")


def bench_tui_first_frame(repeats: int = 3, size: tuple[int, int] = (120, 40), timeout_s: float = 60.0) -> list[Figure]:
    """`prag tui` as a user starts it, on a pseudo-terminal (POSIX only; elsewhere nothing is reported)."""
    if os.name != "posix":
        return []
    samples = [_time_first_frame(size, timeout_s) for _ in range(repeats)]
    return [Figure("tui_first_frame_s", statistics.median(samples), "s", 1.5,
                   f"median of {repeats}: `prag tui` spawned on a {size[0]}x{size[1]} pseudo-terminal until the bytes read "
                   f"back hold the whole first screen (status, question box, six cards, key footer); the model then loads in a worker")]


def bench_key_latency(store: Path, samples: int = 60, max_new_tokens: int = 32) -> Figure:
    """`python -m tui.bench` in a fresh process: the real app headless (Pilot), six answers streaming."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}
    args = [sys.executable, "-m", "tui.bench", "--samples", str(samples), "--max-new-tokens", str(max_new_tokens), "--store", str(store)]
    result = subprocess.run(args, capture_output=True, text=True, timeout=900, env=env)
    if result.returncode != 0:
        raise RuntimeError(result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "tui.bench failed")
    data = json.loads(result.stdout.strip().splitlines()[-1])
    return Figure("tui_key_latency_p95_ms", data["p95_ms"], "ms", 50.0,
                  f"{data['samples']} keys typed while {data['methods']} answers stream ({data['runs']} run(s) of {max_new_tokens} tokens, "
                  f"{data['size'][0]}x{data['size'][1]}): key event to the refresh that shows it; p50 {data['p50_ms']:.1f} ms, "
                  f"max {data['max_ms']:.1f} ms")


# --- offline stages: PRAG encoding and translator training --------------------------------------------


def gold_records(count: int = 2, pairs: int = 3) -> list:
    """Augmented sample passages with their gold QA pair (the sample data has one per passage), used
    `pairs` times so each passage gets the reference recipe's 5 training examples (3 pairs)."""
    from engine.offline.augment import AugmentRecord, gold_pairs, light_rewrite
    from engine.corpus import sample_questions_path
    from engine.qa import load_qa

    records = []
    for item in load_qa(sample_questions_path())[:count]:
        passage = item.passages[0]
        gold = gold_pairs(passage, [item])
        records.append(AugmentRecord(passage, light_rewrite(passage.text), (gold * pairs)[:pairs]))
    return records


def bench_offline_stages(loaded, workdir: Path, quick: bool = False, progress: ProgressCallback | None = None) -> list[Figure]:
    """Encode two sample passages' LoRAs (engine.offline.encode), then train the translator a few steps on them (engine.offline.train)."""
    from engine.offline.encode import encode_records
    from engine.store import LoraStore
    from engine.offline.train import TrainConfig, train_translator

    records = gold_records(2)
    store = LoraStore(Path(workdir) / "loras", loaded.model_id)
    encoded = encode_records(loaded, records, store, "gold", progress, label="Benchmark: encoding PRAG LoRAs")
    steps = encoded.steps // max(encoded.encoded, 1)
    per_passage = 1 if quick else 2
    config = TrainConfig(epochs=1, per_passage=per_passage, checkpoint_every=0)
    trained = train_translator(loaded, records, store, Path(workdir) / "translator.safetensors", config, progress)
    return [
        Figure("encode_s_per_passage", encoded.seconds_per_passage, "s", 10.0,
               f"{encoded.encoded} sample passages, gold QA pair x3 -> the reference recipe's {steps} steps each (rank 2, 1 epoch); "
               f"{encoded.seconds_per_step:.2f} s/step, {encoded.cpu_seconds_per_passage:.1f} CPU-s/passage"),
        Figure("translator_train_s_per_step", trained.seconds_per_step, "s", None,
               f"{trained.new_steps} steps on those passages' LoRAs (p=2, batch 1, LM + KL + MSE loss; embeddings computed before); "
               f"{trained.cpu_seconds / max(trained.new_steps, 1):.2f} CPU-s/step"),
    ]


# --- soak: one engine session, many questions ------------------------------------------------------------


def current_rss_mb() -> float:
    """Resident memory of this process now (not the peak): /proc on Linux, psutil elsewhere if installed."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import psutil
    except ImportError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the peak: an upper bound
    return psutil.Process().memory_info().rss / 2**20


def bench_soak(explorer, questions: int = 200, warmup: int = 20, new_tokens: int = 8,
               progress: ProgressCallback | None = None, asked: Sequence[str] | None = None) -> list[Figure]:
    """Ask the sample questions (or `asked`) in turn, cycling, in one session, all six methods each;
    memory must level off after the warm-up.

    PRAG gets random stored LoRAs for every retrieved passage and DyPRAG an untrained translator
    when none is loaded (same shapes and cost as trained ones), so every method runs every time.
    """
    import gc

    from engine.adapters import random_adapter
    from engine.corpus import sample_questions_path
    from engine.methods import parse_methods
    from engine.qa import load_qa
    from engine.translator import ParameterTranslator, TranslatorConfig

    if questions <= warmup:
        raise ValueError(f"the soak needs more questions ({questions}) than warm-up questions ({warmup})")
    asked = list(asked) if asked else [item.question for item in load_qa(sample_questions_path())]
    methods = parse_methods("all")
    arch = explorer.loaded.arch
    label = "Soak"
    for seed, question in enumerate(asked):
        for hit in explorer.retrieve(question, 3):
            if not explorer.store.has(hit.passage):
                explorer.store.put(hit.passage, random_adapter(arch, 2, explorer.store.config.scale, 0.001, seed=seed))
    if explorer.translator is None:
        explorer.translator = ParameterTranslator(TranslatorConfig(arch)).eval()
    rss: list[float] = []
    start = time.perf_counter()
    for index in range(questions):
        question = asked[index % len(asked)]
        comparison = explorer.compare(question, explorer.retrieve(question, 3), methods, new_tokens, ignore_eos=True)
        failed = [a for a in comparison.answers if a.error]
        if failed:
            raise RuntimeError(f"soak question {index + 1} ({question!r}): {failed[0].method} failed: {failed[0].error}")
        del comparison
        gc.collect()
        rss.append(current_rss_mb())
        report(progress, label, index + 1, questions, f"RSS {rss[-1]:.0f} MB")
    seconds = time.perf_counter() - start
    base, end = rss[warmup - 1], rss[-1]
    half = rss[len(rss) // 2]
    return [
        Figure("soak_rss_growth_pct", 100 * (end - base) / base, "%", 5.0,
               f"RSS after question {warmup} -> after question {questions}: {base:.0f} -> {end:.0f} MB (peak {max(rss):.0f} MB; "
               f"second half {100 * (end - half) / half:+.1f}%); sample questions cycled, six methods, {new_tokens} tokens each"),
        Figure("soak_s_per_question", seconds / questions, "s", None, f"{questions} questions, all six methods in one batched pass each"),
        Figure("soak_rss_mb", end, "MB", None, "resident memory after the last question"),
    ]


def machine_load() -> list[Figure]:
    """The 1-minute load average when the run ended: figures from a busy machine are not an idle one's."""
    cores = os.cpu_count() or 1
    if not hasattr(os, "getloadavg"):  # Windows
        return []
    one, five, fifteen = os.getloadavg()
    return [Figure("machine_load_1min", one, "", None, f"load average at the end of the run (5 and 15 min: {five:.1f}, {fifteen:.1f}) "
                  f"on {cores} cores; above {cores} the benchmark shared the CPUs with other work")]


def figures_json(figures: list[Figure]) -> dict:
    return {f.name: f.to_json() for f in figures}



# --- scale: bm25s over a million passages, encoding on Ray ------------------------------------------


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
    built = _subprocess_json(code, timeout=3600)
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


def benchmark_records(count: int) -> list:
    """Augmented passages for timing the encoder: sample-corpus passages, three QA pairs each (the recipe's 5 steps)."""
    from engine.offline.augment import AugmentRecord, QAPair, light_rewrite
    from engine.corpus import load_corpus

    records = []
    for passage in load_corpus(None)[:count]:
        words = passage.text.split()
        pairs = [QAPair(f"What does the passage about {passage.title} say, part {i + 1}?", " ".join(words[3 * i:3 * i + 3]),
                        " ".join(words[: 8 + i])) for i in range(3)]
        records.append(AugmentRecord(passage, light_rewrite(passage.text), pairs))
    return records


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


def run_scale_benchmarks(workdir: Path, passages: int = 1_000_000, encode_passages: int = 6, models_dir: Path | None = None,
                         ray: bool = True, progress: ProgressCallback | None = None) -> list[Figure]:
    figures = bench_bm25s_scale(workdir, passages, progress=progress)
    if ray:
        figures += bench_ray_encode(workdir, encode_passages, models_dir=models_dir, progress=progress)
    return figures
