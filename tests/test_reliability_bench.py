"""`prag bench` pieces that CI can afford: they run and report well-formed figures (their values are
never asserted: speed targets live in `prag bench`), and the BM25 scoring that replaced rank-bm25's
per-passage Python loop gives exactly rank-bm25's numbers."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from engine.bench import _ESCAPES, Figure, bench_soak, current_rss_mb, figures_json, gold_records
from engine.corpus import make_passage
from engine.retrieval import BM25Retriever


def test_postings_scores_equal_rank_bm25_bit_for_bit():
    rng = random.Random(5)
    vocab = [f"w{i}" for i in range(300)]
    passages = [make_passage(" ".join(rng.choices(vocab, k=rng.randint(1, 40))), f"p{i}") for i in range(400)]
    passages += [make_passage("the and of", "to"), make_passage("w1 w1 w1 w1 w2")]  # stop words only; repeated terms
    retriever = BM25Retriever(passages)
    queries = [rng.choices(vocab, k=6) for _ in range(30)] + [["w1", "w1", "absent"], ["absent"], ["w2", "w0", "w2"]]
    for terms in queries:
        assert np.array_equal(retriever.scores(terms), retriever._bm25.get_scores(terms)), terms
    hits = retriever.search("w1 w2", 3)
    assert hits[0].passage.text == "w1 w1 w1 w1 w2" and hits[0].matched_terms == ("w1", "w2")
    assert retriever.search("the and of", 3) == []  # stop words only: nothing to match


def test_figures_serialise_with_value_unit_target_ok():
    figures = [Figure("a", 1.23456, "s", 2.0, "note"), Figure("b", 3.0, "MB", 2.0), Figure("c", 7.0, "ratio")]
    data = json.loads(json.dumps(figures_json(figures)))
    assert data["a"] == {"value": 1.2346, "unit": "s", "target": 2.0, "ok": True, "note": "note"}
    assert data["b"]["ok"] is False and data["c"]["ok"] is None and data["c"]["target"] is None


def test_screen_text_is_read_through_terminal_escapes():
    raw = b"\x1b[?1049h\x1b]22;default\x07\x1b[1;1H\x1b[1;38;5;253;48;5;17mprag-explorer\x1b[0m \x1b(B\x1b=Help\x1b[40;1H"
    assert _ESCAPES.sub(b"", raw) == b"prag-explorer Help"


@pytest.mark.skipif(not hasattr(__import__("os"), "openpty"), reason="pseudo-terminals are POSIX only")
def test_tui_first_frame_is_measured_on_a_pseudo_terminal(loaded):  # loaded: the model cache exists, nothing converts
    from engine.bench import bench_tui_first_frame

    (figure,) = bench_tui_first_frame(repeats=1, timeout_s=120)
    assert figure.name == "tui_first_frame_s" and figure.unit == "s" and figure.target == 1.5 and figure.value > 0


def test_gold_records_give_the_reference_recipe_five_examples(loaded):
    from engine.offline.encode import training_texts

    records = gold_records(2)
    assert len(records) == 2 and all(len(r.qa) == 3 for r in records)
    assert all(r.qa[0].answer in r.passage.text or r.qa[0].answer.lower() in r.passage.text.lower() for r in records)
    assert [len(training_texts(loaded.tokenizer, r)) for r in records] == [5, 5]


def test_soak_runs_six_methods_per_question_and_reports_memory(loaded, tmp_path):
    from engine.corpus import load_corpus
    from engine.explorer import Explorer
    from engine.store import LoraStore

    explorer = Explorer(loaded, BM25Retriever(load_corpus(None)), LoraStore(tmp_path / "loras", loaded.model_id), None, "no translator")
    figures = {f.name: f for f in bench_soak(explorer, questions=2, warmup=1, new_tokens=1,
                                             asked=["Who founded the harbour town of Velmora?", "Who wrote Hamlet?"])}
    assert set(figures) == {"soak_rss_growth_pct", "soak_s_per_question", "soak_rss_mb"}
    assert figures["soak_rss_growth_pct"].target == 5.0 and figures["soak_rss_mb"].value > 100
    assert explorer.store.keys() and all(p.parent == explorer.store.dir for p in explorer.store.dir.glob("*"))  # random LoRAs: only there
    assert 0 < current_rss_mb() < 1e6


def test_reading_a_stored_lora_again_and_again_keeps_nothing_alive(tmp_path):
    """The soak's steady growth came from here: safetensors' `get_tensor` kept two objects per tensor."""
    import gc
    import tracemalloc

    from engine.adapters import load_adapter, random_adapter, save_adapter
    from engine.models import ModelArch

    path = tmp_path / "lora.safetensors"
    save_adapter(random_adapter(ModelArch("m", 64, 128, 30), 2, 16.0), path)  # 180 tensors, like a SmolLM2 LoRA
    for _ in range(3):
        load_adapter(path)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(40):
            assert len(load_adapter(path).pairs) == 90
        gc.collect()
        grown = sum(stat.count_diff for stat in tracemalloc.take_snapshot().compare_to(before, "filename"))
    finally:
        tracemalloc.stop()
    assert grown < 100, f"{grown} objects kept alive by 40 reads of one LoRA (7,200 tensors)"
