"""The batched comparison on the real embedded model (short generations)."""

from __future__ import annotations

import json
import threading

import pytest

from engine.adapters import random_adapter
from engine.corpus import load_corpus, sample_questions_path
from engine.errors import InputError
from engine.explorer import AskRequest, Explorer
from engine.generate import generate_rows
from engine.methods import parse_methods
from engine.prompts import generation_prompt, question_offset
from engine.qa import load_qa
from engine.retrieval import BM25Retriever
from engine.store import LoraStore


@pytest.fixture
def explorer(loaded, tmp_path):
    return Explorer(loaded, BM25Retriever(load_corpus(None)), LoraStore(tmp_path / "loras", loaded.model_id), None,
                    "no translator for test")


def mentions(text: str, answers) -> bool:
    return any(a.lower() in text.lower() for a in answers)


def test_batched_rows_equal_rows_run_alone(loaded):
    tok = loaded.tokenizer
    corpus = load_corpus(None)
    prompts = [generation_prompt(tok, "Who wrote Hamlet?"), generation_prompt(tok, "Who wrote Hamlet?", corpus[:2]),
               generation_prompt(tok, "What is the capital of Japan?")]
    adapter = random_adapter(loaded.arch, rank=2, scale=16.0, std=0.002, seed=0)
    adapters = [None, adapter, adapter]
    batched = generate_rows(loaded.model, tok, prompts, adapters, 6, ignore_eos=True, stop_at_newline=False)
    for prompt, ad, row in zip(prompts, adapters, batched, strict=False):
        alone = generate_rows(loaded.model, tok, [prompt], [ad], 6, ignore_eos=True, stop_at_newline=False)[0]
        assert row.token_ids == alone.token_ids
    assert all(len(r.token_ids) == 6 for r in batched)


@pytest.mark.parametrize("joined", [True, False], ids=["grouped-prefill", "padded-prefill"])
def test_a_lora_scoped_to_the_question_leaves_the_passages_to_the_model(loaded, monkeypatch, joined):
    import engine.generate as generate

    monkeypatch.setattr(generate, "_can_join_caches", lambda model: joined)  # padded: how sliding-window models run
    tok = loaded.tokenizer
    passages = load_corpus(None)[:2]
    question = "Who wrote Hamlet?"
    prompt = generation_prompt(tok, question, passages)
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    offset = question_offset(tok, question, passages)
    assert tok.decode(ids[offset:]).lstrip("\n").startswith("Question: Who wrote Hamlet?")
    assert passages[-1].text.split()[-1] in tok.decode(ids[:offset])
    assert question_offset(tok, question, ()) == 0
    adapter = random_adapter(loaded.arch, rank=4, scale=16.0, std=0.01, seed=3)
    candidate = tok(" Shakespeare", add_special_tokens=False)["input_ids"]
    short = generation_prompt(tok, "Who?")  # a shorter row: the padded prefill shifts the others' starts
    rows = generate_rows(loaded.model, tok, [short, prompt, prompt, prompt, prompt], [None, None, adapter, adapter, adapter], 1,
                         score_ids=[candidate], adapt_from=[0, 0, 0, offset, len(ids)])
    bare, everywhere, from_question, on_no_prompt_token = (r.scores[0] for r in rows[1:])
    assert on_no_prompt_token == pytest.approx(bare, abs=1e-3)  # the first new token reads only bare states
    assert abs(from_question - bare) > 1e-2 and abs(from_question - everywhere) > 1e-2


def test_six_methods_missing_artifacts_explain_themselves(explorer):
    question = "Who wrote Hamlet?"
    updates = []
    comparison = explorer.compare(question, explorer.retrieve(question, 3), parse_methods("all"), 4, on_update=updates.append)
    by_method = {a.method: a for a in comparison.answers}
    assert list(by_method) == ["vanilla", "rag", "prag", "prag_combine", "dyprag", "dyprag_combine"]
    for name in ("vanilla", "rag"):
        assert by_method[name].status == "done" and by_method[name].error is None and by_method[name].tokens > 0
    for name in ("prag", "prag_combine"):
        assert by_method[name].status == "error" and "prag encode" in by_method[name].error
    for name in ("dyprag", "dyprag_combine"):
        assert by_method[name].status == "error" and "prag train" in by_method[name].error
    assert any(u.delta for u in updates), "tokens must stream through on_update"
    payload = comparison.to_json()
    assert json.loads(json.dumps(payload))["answers"][0]["method"] == "vanilla"


def test_prag_rows_use_stored_loras_and_report_norms(explorer):
    question = "Who wrote Hamlet?"
    hits = explorer.retrieve(question, 2)
    for i, hit in enumerate(hits):
        explorer.store.put(hit.passage, random_adapter(explorer.loaded.arch, rank=2, scale=16.0, std=0.001, seed=i))
    comparison = explorer.compare(question, hits, parse_methods("prag,prag_combine"), 3)
    for answer in comparison.answers:
        assert answer.error is None and answer.status == "done"
        assert len(answer.norms) == explorer.loaded.arch.num_layers
        assert all(row["up_proj"] > 0 for row in answer.norms)


def test_fictional_fact_needs_the_passage(explorer):
    """RAG reads the invented fact from the passage; the model alone cannot know it."""
    items = [q for q in load_qa(sample_questions_path()) if q.meta.get("group") == "fictional" and not q.meta.get("rerank_case")]
    wins = []
    for item in items[:6]:
        comparison = explorer.ask(AskRequest(item.question, tuple(parse_methods("vanilla,rag")), top_k=1, max_new_tokens=12))
        rag, vanilla = comparison.answer("rag").text, comparison.answer("vanilla").text
        if mentions(rag, item.answers) and not mentions(vanilla, item.answers):
            wins.append(item.id)
    assert wins, "on at least one fictional question RAG must be right where vanilla is not"


def test_cancel_marks_unfinished_rows_cancelled(explorer):
    cancel = threading.Event()

    def on_update(update):
        if update.delta:
            cancel.set()

    question = "Who wrote Hamlet?"
    comparison = explorer.compare(question, explorer.retrieve(question, 3), parse_methods("vanilla,rag"), 24,
                                  on_update=on_update, cancel=cancel, ignore_eos=True)
    assert {a.status for a in comparison.answers} == {"cancelled"}
    assert all(a.tokens <= 2 for a in comparison.answers)


@pytest.mark.parametrize("question", ["", "   ", "x" * 10_000])
def test_bad_questions_are_refused(explorer, question):
    with pytest.raises(InputError):
        explorer.retrieve(question, 3)
