"""Dynamic reranking: lenient parsing, visible fallback, and the chosen passages reach every method."""

from __future__ import annotations

import pytest

from engine.corpus import load_corpus, sample_questions_path
from engine.errors import InputError
from engine.explorer import AskRequest, Explorer
from engine.methods import parse_methods
from engine.qa import load_qa
from engine.rerank import LLMReranker, check_mode, parse_identifiers
from engine.retrieval import BM25Retriever
from engine.store import LoraStore


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("[3] > [1] > [2]", [3, 1, 2]),
        ("[2], [2], [9]", [2]),
        ("Passage 4 and passage 1", [4, 1]),
        ("3, 1", [3, 1]),
        ("[1] Winter gales of the Grimsand coast, [", [1]),
        ("[11] Red", []),
        ("none of them", []),
        ("", []),
        ("The year 1763.5 was [", []),
    ],
)
def test_parse_identifiers(raw, expected):
    assert parse_identifiers(raw, candidates=5) == expected


def test_unknown_mode_is_refused():
    assert check_mode("Dynamic") == "dynamic"
    with pytest.raises(InputError, match="rerank mode"):
        check_mode("magic")


class ScriptedReranker(LLMReranker):
    """The real parsing and plumbing, with the model's reply replaced by a script."""

    def __init__(self, loaded, reply: str) -> None:
        super().__init__(loaded)
        self.reply = reply
        self.prompts: list[str] = []

    def generate(self, prompt: str, cancel=None) -> str:
        self.prompts.append(prompt)
        return self.reply


@pytest.fixture
def explorer(loaded, tmp_path):
    return Explorer(loaded, BM25Retriever(load_corpus(None)), LoraStore(tmp_path, loaded.model_id), None, "no translator")


def rerank_case():
    return next(q for q in load_qa(sample_questions_path()) if q.meta.get("rerank_case"))


def test_reranked_passage_reaches_rag(explorer):
    case = rerank_case()
    pool = explorer.retrieve(case.question, 10)
    position = next(i for i, h in enumerate(pool, start=1) if h.passage.id == case.meta["passage_id"])
    assert position > 3, "the sample case is built so BM25 ranks its passage below the top 3"
    explorer.reranker = ScriptedReranker(explorer.loaded, f"[{position}]")
    comparison = explorer.ask(AskRequest(case.question, tuple(parse_methods("rag")), top_k=3, max_new_tokens=12, rerank="dynamic"))
    rerank = comparison.extra["rerank"]
    assert rerank["kept"] == [case.meta["passage_id"]] and not rerank["fallback"]
    assert len(rerank["dropped"]) == len(pool) - 1
    assert [h.passage.id for h in comparison.hits] == [case.meta["passage_id"]]
    assert any(a.lower() in comparison.answer("rag").text.lower() for a in case.answers)
    baseline = explorer.ask(AskRequest(case.question, tuple(parse_methods("rag")), top_k=3, max_new_tokens=12))
    assert case.meta["passage_id"] not in [h.passage.id for h in baseline.hits]


def test_garbage_reply_falls_back_to_bm25_order(explorer):
    case = rerank_case()
    explorer.reranker = ScriptedReranker(explorer.loaded, "I like lighthouses")
    hits, result = explorer.rerank_hits(case.question, explorer.retrieve(case.question, 6), top_k=3)
    assert result.fallback and "BM25" in result.note and result.raw == "I like lighthouses"
    assert [h.passage.id for h in hits] == [h.passage.id for h in explorer.retrieve(case.question, 3)]
    assert len(result.dropped) == 3


def test_real_model_reply_is_parsed_or_falls_back(explorer):
    """Whatever the small model says, the result is a usable, consistent selection."""
    case = rerank_case()
    pool = explorer.retrieve(case.question, 6)
    hits, result = explorer.rerank_hits(case.question, pool, top_k=3)
    assert hits and len(hits) + len(result.dropped) == 6
    if result.fallback:  # unusable reply: BM25's order, and the note says so
        assert [h.passage.id for h in hits] == [h.passage.id for h in pool[:3]] and "BM25" in result.note
    else:  # the parsed candidate numbers are exactly the passages kept, in that order
        assert result.order == parse_identifiers(result.raw, 6)[: len(hits)]
        assert [h.passage.id for h in hits] == [pool[n - 1].passage.id for n in result.order]
    assert len({h.passage.id for h in hits} | {h.passage.id for h in result.dropped}) == 6


def test_orderings_are_distinct_and_cover_baselines():
    from engine.rerank_data import orderings

    tried = orderings(pool_size=5, top_k=3, reranker_order=[1, 2, 3], singles=2)
    assert [s for s, _ in tried] == ["bm25_top_k", "single_1", "single_2", "none"]  # reranker == bm25: deduped
    tried = orderings(pool_size=2, top_k=3, reranker_order=[2], singles=3)
    assert dict(tried) == {"bm25_top_k": [1, 2], "reranker": [2], "single_1": [1], "none": []}


def test_rerank_data_records_and_resumes(explorer, tmp_path):
    import json

    from engine.rerank_data import collect

    items = [q for q in load_qa(sample_questions_path()) if q.meta.get("group") == "fictional"][:2]
    explorer.reranker = ScriptedReranker(explorer.loaded, "[1]")
    out = tmp_path / "rr.jsonl"
    method = parse_methods("rag")[0]
    assert collect(explorer, items[:1], method, out, candidates=4, max_new_tokens=6, singles=1, use_corpus=True) == 1
    assert collect(explorer, items, method, out, candidates=4, max_new_tokens=6, singles=1, use_corpus=True) == 1
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [i.id for i in items]
    for row in rows:
        sources = [t["source"] for t in row["trials"]]
        assert sources[0] == "bm25_top_k" and "none" in sources and row["best"] in sources
        assert all(0.0 <= t["f1"] <= 1.0 for t in row["trials"]) and len(row["candidates"]) == 4


def test_eval_with_dynamic_rerank_reports_passages_kept(explorer, tmp_path):
    import json

    from engine.corpus import sample_corpus_path
    from engine.evaluate import EvalOptions, evaluate

    case = rerank_case()
    data = tmp_path / "one.jsonl"
    data.write_text(json.dumps({"id": case.id, "question": case.question, "answers": list(case.answers)}) + "\n")
    pool = explorer.retrieve(case.question, 10)
    position = next(i for i, h in enumerate(pool, start=1) if h.passage.id == case.meta["passage_id"])
    explorer.reranker = ScriptedReranker(explorer.loaded, f"[{position}] > [1]")
    options = EvalOptions(data=data, methods=tuple(parse_methods("rag")), max_new_tokens=8, corpus=sample_corpus_path(),
                          out_dir=tmp_path / "out", rerank="dynamic")
    result = evaluate(options, explorer=explorer)
    assert result.methods["rag"].passages == 2.0
    record = json.loads(result.predictions["rag"].read_text().splitlines()[0])
    assert record["passages"][0] == case.meta["passage_id"] and record["rerank"]["fallback"] is False
    plain = evaluate(EvalOptions(data=data, methods=tuple(parse_methods("rag")), max_new_tokens=8, corpus=sample_corpus_path(),
                                 out_dir=tmp_path / "out"), explorer=explorer)
    assert plain.predictions["rag"] != result.predictions["rag"], "rerank settings must not share prediction files"
