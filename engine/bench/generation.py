"""Answering: all six methods batched vs one after another, DyPRAG vs vanilla, model load,
peak memory, and the soak (memory over many questions in one session).

Ratios are taken within one run on one machine (batched vs sequential, DyPRAG vs
vanilla) so they hold across machines; absolute figures (ms, s, MB) are what this
machine measured.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from pathlib import Path

from engine.bench.figures import Figure, current_rss_mb, subprocess_json, timed
from engine.progress import ProgressCallback, report

BENCH_QUESTION = "What colour is the town hall of Velmora painted?"
BENCH_CANDIDATES = ("saffron yellow", "cobalt blue", "forest green")
"""Answers the scoring figure probes: the passage's, and two of other fictional passages."""


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

    def run(methods, tokens: int = new_tokens, scores: tuple[str, ...] = ()):
        comparison = explorer.compare(question, hits, methods, tokens, ignore_eos=True, scores=scores)
        bad = [a for a in comparison.answers if a.error or a.tokens != tokens]
        if bad:
            raise RuntimeError(f"benchmark row failed: {bad[0].method}: {bad[0].error or bad[0].tokens}")
        return comparison

    variants = {
        "batched": lambda: run(all_methods),
        # Three candidate answers teacher-forced after the answers, from the prompts' cached keys and values.
        "batched_scored": lambda: run(all_methods, scores=BENCH_CANDIDATES),
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
            samples[name].append(timed(fn, 1))
        report(progress, "Benchmark: generation", round_index + 1, repeats)
    batched, scored, sequential, rag, vanilla, dyprag, batched_prefill, sequential_prefill = (
        statistics.median(samples[n]) for n in variants)
    decode_ratio = (batched - batched_prefill) / max(sequential - sequential_prefill, 1e-9)

    passages = [h.passage for h in hits]

    def prag_ready():
        adapter = merge_sum([explorer.store.get(p) for p in passages])
        with inject(explorer.loaded.model, [adapter]):
            pass

    prag_ready()
    prag_ms = timed(prag_ready, max(3, repeats * 3)) * 1000
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
        Figure("scoring_overhead", scored / batched, "ratio", 1.2,
               f"six methods with {len(BENCH_CANDIDATES)} candidate answers scored (the probes) / without, {tokens}"),
        Figure("dyprag_vs_vanilla", dyprag / vanilla, "ratio", 1.15, f"translate + merge + inject for top-3 included; {note}".strip("; ")),
        Figure("prag_load_merge_inject_ms", prag_ms, "ms", 50.0, "3 stored LoRAs: read, rank-concatenate, hook in and out"),
    ]


def bench_other_dtype(explorer, new_tokens: int, repeats: int) -> Figure:
    """Six answers with the model in the other precision (bfloat16 <-> float32) on the same device, as a ratio:
    whether `--dtype bfloat16` pays on this machine. A second copy of the model is loaded for it."""
    from engine.device import Placement
    from engine.explorer import Explorer
    from engine.methods import parse_methods
    from engine.models import load_model

    own = explorer.loaded.placement
    other = Placement(own.device, "float32" if own.dtype != "float32" else "bfloat16")
    copy = load_model(explorer.loaded.source, Path(explorer.loaded.source).parent, placement=other)
    twin = Explorer(copy, explorer.retriever, explorer.store, explorer.translator, explorer.translator_note)
    hits = explorer.retrieve(BENCH_QUESTION, 3)
    methods = parse_methods("all")
    times = {}
    for name, engine in (("own", explorer), ("other", twin)):
        engine.compare(BENCH_QUESTION, hits, methods, new_tokens, ignore_eos=True)  # warm-up
        times[name] = timed(lambda e=engine: e.compare(BENCH_QUESTION, hits, methods, new_tokens, ignore_eos=True), repeats)
    return Figure(f"six_methods_{other.dtype}_vs_{own.dtype}", times["other"] / times["own"], "ratio", None,
                  f"six answers in {other.dtype} / in {own.dtype} on {own.device} ({times['other']:.2f} s vs {times['own']:.2f} s)")


def bench_model_load(models_dir: Path) -> Figure:
    code = f"""
import json, time
from transformers.utils import logging; logging.set_verbosity_error(); logging.disable_progress_bar()
from engine.models import load_model
from pathlib import Path
load_model(None, Path({str(models_dir)!r}))  # make sure the cache exists
start = time.perf_counter(); load_model(None, Path({str(models_dir)!r})); print(json.dumps({{"s": time.perf_counter() - start}}))
"""
    return Figure("model_load_from_cache_s", subprocess_json(code)["s"], "s", 3.0, "safetensors cache + tokenizer, fresh process")


def bench_peak_rss(models_dir: Path, new_tokens: int, store: Path) -> Figure:
    code = f"""
import json, resource
from transformers.utils import logging; logging.set_verbosity_error(); logging.disable_progress_bar()
from engine.config import load_settings
from engine.session import open_explorer
from engine.bench.generation import _prepare_explorer, BENCH_QUESTION
from engine.methods import parse_methods
explorer = open_explorer(load_settings({{"model_cache": {str(models_dir)!r}, "store": {str(store)!r}}}))
hits, _ = _prepare_explorer(explorer, BENCH_QUESTION)
explorer.compare(BENCH_QUESTION, hits, parse_methods("all"), {new_tokens}, ignore_eos=True)
print(json.dumps({{"mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""
    return Figure("peak_rss_mb_six_methods", subprocess_json(code)["mb"], "MB", 2048.0, "one question, all six methods, fresh process")


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
