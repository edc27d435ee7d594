"""Retrieval indexes: bm25s ranks as rank-bm25 does, passages read lazily, builds atomic and idempotent, CLI, Elasticsearch.

The Elasticsearch tests talk to a real server: they run when PRAG_ES_URL is set and are
skipped (saying so) otherwise. Nothing stands in for the server.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from engine.config import load_settings
from engine.corpus import load_corpus, make_passage, sample_corpus_path, sample_questions_path
from engine.errors import ArtifactError, Cancelled, InputError
from engine.retrieval import BM25Retriever, tokenize
from engine.retrieval.bm25s import BM25SRetriever
from engine.retrieval.index import build_index, open_configured_index, open_index
from engine.retrieval.layout import MANIFEST, PassageFile, corpus_stats, read_info


def write_corpus(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def synthetic_rows(n: int, seed: int = 0) -> list[dict]:
    """Zipf-like words, so some terms are in more than half the passages (negative idf, the epsilon floor)."""
    rng = random.Random(seed)
    vocab = [f"t{i}" for i in range(300)]
    weights = [1 / (i + 1) for i in range(len(vocab))]
    rows = [{"title": f"doc {i % 50}", "text": " ".join(rng.choices(vocab, weights, k=rng.randint(5, 40)))} for i in range(n)]
    rows.append({"title": "", "text": "the and of"})  # stop words only: the placeholder token
    return rows


def sample_questions() -> list[str]:
    return [json.loads(line)["question"] for line in sample_questions_path().read_text(encoding="utf-8").splitlines() if line.strip()]


def assert_same_ranking(reference: BM25Retriever, index: BM25SRetriever, query: str, k: int) -> None:
    """Same top-k as rank-bm25, ties aside: at every rank the index's passage has the score rank-bm25 has there."""
    ours, theirs = reference.search(query, k), index.search(query, k)
    assert len(ours) == len(theirs), query
    full = reference._bm25.get_scores(tokenize(query))
    position = {p.id: i for i, p in enumerate(reference.passages)}
    for want, got in zip(ours, theirs, strict=False):
        assert got.score == pytest.approx(want.score, rel=1e-5, abs=1e-5), query
        assert full[position[got.passage.id]] == pytest.approx(want.score, rel=1e-5, abs=1e-5), query
        if got.passage.id == want.passage.id:
            assert got.matched_terms == want.matched_terms


def test_bm25s_ranks_like_bm25_on_the_sample_corpus(tmp_path):
    build_index(None, tmp_path / "idx", "bm25s")
    index = open_index(tmp_path / "idx")
    assert isinstance(index, BM25SRetriever)
    reference = BM25Retriever(load_corpus(None))
    assert len(index) == len(reference)
    same_order = 0
    for question in sample_questions():
        assert_same_ranking(reference, index, question, 5)
        same_order += [h.passage.id for h in reference.search(question, 5)] == [h.passage.id for h in index.search(question, 5)]
    assert same_order >= len(sample_questions()) - 2  # only exact ties may swap


def test_bm25s_matrix_holds_rank_bm25_scores_for_every_passage(tmp_path):
    """bm25s's own loader and scorer read our matrix: every passage's score equals BM25Okapi's, common terms included."""
    import numpy as np

    corpus = write_corpus(tmp_path / "c.jsonl", synthetic_rows(400))
    build_index(corpus, tmp_path / "idx", "bm25s")
    index = open_index(tmp_path / "idx")
    reference = BM25Retriever(load_corpus(corpus))
    assert [p.id for p in index.passages] == [p.id for p in reference.passages]
    rng = random.Random(1)
    queries = [["t0"], ["t1", "t0"], ["t250"], ["doc", "t3", "t3"], ["missing", "t7"], ["\u2205"]]
    queries += [[f"t{rng.randrange(300)}" for _ in range(4)] for _ in range(20)]
    for terms in queries:
        expected = reference._bm25.get_scores(terms)
        assert np.allclose(index.scores(terms), expected, rtol=1e-5, atol=1e-5), terms
        assert_same_ranking(reference, index, " ".join(terms), 10)
    assert reference._bm25.idf["t0"] == pytest.approx(0.25 * reference._bm25.average_idf)  # the floor was exercised


def test_queries_without_known_terms_return_nothing(tmp_path):
    build_index(None, tmp_path / "idx", "bm25s")
    index = open_index(tmp_path / "idx")
    assert index.search("zzzqqq xyzzy", 3) == []
    assert index.search("who is the", 3) == []  # stop words only
    with pytest.raises(InputError):
        index.search("Velmora", 0)


def test_passages_read_lazily_by_offset_with_duplicates_dropped(tmp_path):
    rows = [
        {"id": "a", "title": "Ünïcode", "text": "Grüße aus Köln — 東京 and émigrés."},
        {"id": "b", "title": "", "text": "second\npassage with a newline"},
        {"id": "a", "title": "dup", "text": "a later duplicate id is dropped, as load_corpus does"},
        {"text": "no id: a content hash"},
    ]
    corpus = write_corpus(tmp_path / "c.jsonl", rows)
    info = build_index(corpus, tmp_path / "idx", "bm25s")
    assert info.passages == 3
    store = PassageFile(tmp_path / "idx")
    assert list(store) == load_corpus(corpus)
    assert store[0].title == "Ünïcode" and store[1].text == "second\npassage with a newline"
    with pytest.raises(IndexError):
        store[3]
    hit = open_index(tmp_path / "idx").search("Köln émigrés", 1)[0]
    assert hit.passage.id == "a" and set(hit.matched_terms) == {"köln", "émigrés"}


def test_bm25_backend_stores_passages_and_ranks_in_memory(tmp_path):
    info = build_index(None, tmp_path / "idx", "bm25")
    assert info.backend == "bm25" and not (tmp_path / "idx" / "bm25s").exists()
    index = open_index(tmp_path / "idx")
    reference = BM25Retriever(load_corpus(None))
    for question in sample_questions()[:10]:
        assert [h.passage.id for h in index.search(question, 3)] == [h.passage.id for h in reference.search(question, 3)]


def test_auto_backend_picks_by_size(tmp_path, monkeypatch):
    import engine.retrieval.index as index_module

    assert build_index(None, tmp_path / "small", "auto").backend == "bm25"
    monkeypatch.setattr(index_module, "AUTO_BM25S_FROM", 10)
    assert build_index(None, tmp_path / "large", "auto").backend == "bm25s"


def test_rebuild_only_when_the_corpus_changed(tmp_path):
    corpus = write_corpus(tmp_path / "c.jsonl", synthetic_rows(50))
    first = build_index(corpus, tmp_path / "idx", "bm25s")
    assert not first.reused and read_info(tmp_path / "idx").digest == first.digest
    assert build_index(corpus, tmp_path / "idx", "bm25s").reused
    assert not build_index(corpus, tmp_path / "idx", "bm25s", force=True).reused
    write_corpus(corpus, synthetic_rows(60, seed=3))
    changed = build_index(corpus, tmp_path / "idx", "bm25s")
    assert not changed.reused and changed.passages == 61 and changed.digest != first.digest
    assert len(open_index(tmp_path / "idx")) == 61


def test_interrupted_build_keeps_the_old_index_and_leaves_nothing(tmp_path):
    corpus = write_corpus(tmp_path / "c.jsonl", synthetic_rows(5000))
    build_index(None, tmp_path / "idx", "bm25s")
    cancel = threading.Event()

    def stop_midway(event) -> None:
        if event.label == "Indexing passages" and event.done >= 2000:
            cancel.set()

    with pytest.raises(Cancelled):
        build_index(corpus, tmp_path / "idx", "bm25s", progress=stop_midway, cancel=cancel)
    assert read_info(tmp_path / "idx").passages == len(load_corpus(None))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl", "idx"]


def test_a_killed_builders_folder_is_removed_by_the_next_build(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    leftover = tmp_path / f".idx.building-{dead}"
    (leftover / "bm25s").mkdir(parents=True)
    (leftover / "passages.jsonl").write_text('{"id": "half', encoding="utf-8")
    build_index(None, tmp_path / "idx", "bm25s")
    assert not leftover.exists()


def test_an_index_caught_mid_swap_is_put_back(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    build_index(None, tmp_path / "idx", "bm25s")
    (tmp_path / "idx").rename(tmp_path / f".idx.old-{dead}")  # killed between "old aside" and "new in place"
    assert len(open_index(tmp_path / "idx")) == len(load_corpus(None))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]


def test_refuses_to_overwrite_a_folder_that_is_not_an_index(tmp_path):
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "notes.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(InputError, match="not a prag index"):
        build_index(None, tmp_path / "precious", "bm25s")
    assert (tmp_path / "precious" / "notes.txt").read_text(encoding="utf-8") == "keep me"


def test_broken_indexes_are_artifact_errors(tmp_path):
    with pytest.raises(ArtifactError, match="does not exist"):
        open_index(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="not a prag index"):
        open_index(tmp_path / "empty")
    build_index(None, tmp_path / "idx", "bm25s")
    (tmp_path / "idx" / "passages.offsets.npy").unlink()
    with pytest.raises(ArtifactError, match="passage file"):
        open_index(tmp_path / "idx")


def test_settings_choose_the_index(tmp_path, monkeypatch):
    for name in ("PRAG_INDEX", "PRAG_ES_INDEX"):
        monkeypatch.delenv(name, raising=False)
    build_index(None, tmp_path / "idx", "bm25s")
    assert open_configured_index(load_settings()) is None
    assert isinstance(open_configured_index(load_settings({"index": tmp_path / "idx"})), BM25SRetriever)
    monkeypatch.setenv("PRAG_INDEX", str(tmp_path / "idx"))
    assert isinstance(open_configured_index(load_settings()), BM25SRetriever)
    with pytest.raises(InputError, match="both an index folder"):
        open_configured_index(load_settings({"es_index": "x"}))


def test_corpus_stats_counts(tmp_path):
    rows = [{"id": "a", "text": "Velmora harbour"}, {"id": "a", "text": "dup"}, {"title": "T", "text": "the founders of Velmora"}]
    stats = corpus_stats(write_corpus(tmp_path / "c.jsonl", rows))
    assert (stats.passages, stats.duplicates, stats.tokens) == (2, 1, 5)


# --- the CLI, as a user runs it ---------------------------------------------------------------------


def prag(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli.app", *args], capture_output=True, text=True, timeout=600,
                          env=os.environ.copy())


def test_cli_index_info_and_errors(tmp_path):
    out = tmp_path / "idx"
    built = prag("corpus", "index", "--corpus", str(sample_corpus_path()), "--backend", "bm25s", "--out", str(out))
    assert built.returncode == 0, built.stderr
    assert "indexed 76 passages with bm25s" in built.stdout
    again = prag("corpus", "index", "--corpus", str(sample_corpus_path()), "--backend", "bm25s", "--out", str(out))
    assert "up to date" in again.stdout
    info = prag("corpus", "info", str(out), "--json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["passages"] == 76 and json.loads(info.stdout)["backend"] == "bm25s"
    counted = prag("corpus", "info", str(sample_corpus_path()), "--json")
    assert json.loads(counted.stdout)["passages"] == 76
    for args, needle in [
        (["corpus", "index", "--backend", "lucene", "--out", str(tmp_path / "x")], "unknown backend"),
        (["corpus", "index", "--backend", "bm25s"], "needs --out"),
        (["corpus", "index", "--backend", "elasticsearch"], "needs --es-index"),
        (["corpus", "index", "--corpus", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "y")], "does not exist"),
        (["corpus", "info", str(tmp_path / "nope.jsonl")], "does not exist"),
        (["ask", "q", "--index", str(tmp_path / "nope")], "does not exist"),
        (["ask", "q", "--index", str(out), "--corpus", str(sample_corpus_path())], "both given"),
    ]:
        result = prag(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert needle in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.model
def test_ask_answers_from_an_index(tmp_path):
    out = tmp_path / "idx"
    assert prag("corpus", "index", "--backend", "bm25s", "--out", str(out)).returncode == 0
    result = prag("ask", "Who founded the harbour town of Velmora?", "--index", str(out), "-m", "rag", "--json", "--max-new-tokens", "8",
                  "--top-k", "3")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    reference = BM25Retriever(load_corpus(None)).search("Who founded the harbour town of Velmora?", 3)
    assert [p["id"] for p in payload["passages"]] == [h.passage.id for h in reference]
    assert payload["answers"][0]["error"] is None and payload["answers"][0]["tokens"] > 0


# --- Elasticsearch, against a real server ------------------------------------------------------------

ES_URL = os.environ.get("PRAG_ES_URL")
needs_es = pytest.mark.skipif(not ES_URL, reason="PRAG_ES_URL is not set: no Elasticsearch server to test against")


@pytest.fixture
def es_name():
    pytest.importorskip("elasticsearch", reason="the `elasticsearch` client is not installed (pip install 'prag-explorer[es]')")
    from elasticsearch import Elasticsearch

    name = f"prag-test-{uuid.uuid4().hex[:8]}"
    yield name
    client = Elasticsearch(ES_URL)
    for index in client.indices.get(index=f"{name}*", ignore_unavailable=True):
        client.indices.delete(index=index, ignore_unavailable=True)


@needs_es
def test_es_index_search_and_atomic_rebuild(tmp_path, es_name):
    from engine.retrieval.elastic import ElasticsearchRetriever, build_es_index

    events = []
    info = build_es_index(None, es_name, ES_URL, progress=events.append, out=tmp_path / "es")
    assert info.passages == 76 and events
    retriever = open_index(tmp_path / "es")
    assert isinstance(retriever, ElasticsearchRetriever) and len(retriever) == 76
    reference = BM25Retriever(load_corpus(None))
    agree = 0
    for question in sample_questions()[:20]:
        hits = retriever.search(question, 3)
        assert hits and all(h.matched_terms for h in hits)
        agree += hits[0].passage.id == reference.search(question, 1)[0].passage.id
    assert agree >= 15  # Lucene's idf differs a little from rank-bm25's; the top passage rarely does
    corpus = write_corpus(tmp_path / "c.jsonl", [{"id": "x", "title": "Zorblax", "text": "Zorblax is a new passage."}])
    build_es_index(corpus, es_name, ES_URL)  # the alias moves to the new index in one step
    assert len(ElasticsearchRetriever(ES_URL, es_name)) == 1
    assert retriever.search("Zorblax", 1)[0].passage.id == "x"


@needs_es
def test_es_missing_index_is_an_artifact_error(es_name):
    from engine.retrieval.elastic import ElasticsearchRetriever

    with pytest.raises(ArtifactError, match="no index"):
        ElasticsearchRetriever(ES_URL, es_name)


def test_es_without_url_says_how_to_set_it(monkeypatch):
    from engine.retrieval.elastic import es_url

    monkeypatch.delenv("PRAG_ES_URL", raising=False)
    with pytest.raises(InputError, match="no Elasticsearch URL") as caught:
        es_url(None)
    assert "PRAG_ES_URL" in caught.value.hint
    assert es_url(None, "http://recorded:9200") == "http://recorded:9200"


def test_manifest_never_stores_credentials():
    from engine.retrieval.elastic import _without_credentials

    assert _without_credentials("https://elastic:s3cret@es.example:9200/") == "https://es.example:9200/"
    assert _without_credentials("http://localhost:9200") == "http://localhost:9200"


def test_manifest_is_written_last(tmp_path):
    info = build_index(None, tmp_path / "idx", "bm25s")
    manifest = json.loads((tmp_path / "idx" / MANIFEST).read_text(encoding="utf-8"))
    assert manifest["passages"] == info.passages and manifest["bytes"] == info.bytes > 0
    assert make_passage("x").key  # the digest is over passage keys: stable across backends
    assert build_index(None, tmp_path / "idx2", "bm25").digest == info.digest


def test_scale_benchmark_figures_on_a_small_synthetic_corpus(tmp_path):
    from engine.bench import bench_bm25s_scale

    figures = {f.name: f for f in bench_bm25s_scale(tmp_path, passages=3000, queries=5)}
    assert set(figures) == {"bm25s_build_s", "bm25s_build_peak_rss_mb", "bm25s_index_mb", "bm25s_open_s", "bm25s_query_ms"}
    assert figures["bm25s_query_ms"].target == 100.0 and figures["bm25s_query_ms"].value > 0
    assert len(open_index(tmp_path / "synthetic-3000.bm25s")) == 3000


def test_optional_backends_load_only_when_used():
    """`prag --help` and the default BM25 path never import bm25s, Elasticsearch or Ray."""
    code = ("import sys, engine.cli.app, engine.retrieval.index, engine.retrieval.bm25s, engine.retrieval.elastic, engine.distributed, "
            "engine.explorer; "
            "loaded = [m for m in ('bm25s', 'elasticsearch', 'ray', 'torch') if m in sys.modules]; assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_chunked_matrix_build_equals_one_chunk():
    """The counting sort fills the same CSC arrays whatever the chunk size, each column in passage order."""
    import tempfile

    import numpy as np

    from engine.retrieval.base import BM25Params
    from engine.retrieval.bm25s import _BM25SBuilder
    from engine.retrieval.layout import iter_passages

    builder = _BM25SBuilder(BM25Params())
    for passage in iter_passages(sample_corpus_path()):
        builder.add(passage)
    with tempfile.TemporaryDirectory() as tmp:
        builder.save(Path(tmp) / "one")
        builder.save(Path(tmp) / "many", chunk_entries=37)
        arrays = {}
        for name in ("data", "indices", "indptr"):
            one, many = (np.load(Path(tmp) / d / f"{name}.csc.index.npy") for d in ("one", "many"))
            assert np.array_equal(one, many), name
            arrays[name] = one
    indptr, indices = arrays["indptr"], arrays["indices"]
    assert all(np.all(np.diff(indices[indptr[i]:indptr[i + 1]]) > 0) for i in range(len(indptr) - 1))


def test_missing_optional_packages_say_how_to_install(monkeypatch):
    from engine.distributed import RayOptions, start_ray
    from engine.retrieval.elastic import ElasticsearchRetriever

    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setitem(sys.modules, "elasticsearch", None)
    with pytest.raises(InputError, match="need Ray") as ray_error:
        start_ray(RayOptions())
    assert "prag-explorer[cluster]" in ray_error.value.hint
    with pytest.raises(InputError, match="elasticsearch") as es_error:
        ElasticsearchRetriever("http://localhost:9200", "x")
    assert "prag-explorer[es]" in es_error.value.hint


def test_es_unreachable_server_is_one_clear_error(tmp_path):
    """No server at all (a closed local port): the error names the URL and says what to check."""
    pytest.importorskip("elasticsearch", reason="the `elasticsearch` client is not installed (pip install 'prag-explorer[es]')")
    from engine.retrieval.elastic import ElasticsearchRetriever, build_es_index

    closed = "http://127.0.0.1:9"
    with pytest.raises(ArtifactError, match="127.0.0.1:9") as caught:
        ElasticsearchRetriever(closed, "prag-nothing")
    assert "PRAG_ES_URL" in caught.value.hint
    with pytest.raises(ArtifactError, match="127.0.0.1:9"):
        build_es_index(None, "prag-nothing", closed, out=tmp_path / "es")
    assert not (tmp_path / "es").exists()
