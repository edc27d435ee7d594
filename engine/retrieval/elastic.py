"""Backend Elasticsearch: BM25 in a server, for corpora shared by many machines.

Elasticsearch gets our tokens too (a whitespace-analyzed field of pre-tokenized
text), so a query matches the same terms; its scoring is Lucene's BM25 with our k1
and b, close to but not the same as rank-bm25's idf. An index folder for this
backend holds only a manifest pointing at the server and the alias.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.atomic import write_text
from engine.corpus import Passage
from engine.errors import ArtifactError, InputError
from engine.progress import ProgressCallback, check_cancel, report
from engine.retrieval.base import EMPTY_TOKEN, BM25Params, Hit, query_terms, ranked_hits, tokenize
from engine.retrieval.layout import MANIFEST, REPORT_EVERY, IndexInfo, corpus_digest, count_lines, iter_passages, resolve_corpus

if TYPE_CHECKING:
    import threading

    from elasticsearch import Elasticsearch

ES_TERMS_FIELD = "terms"
"""Our tokens, space-joined, analyzed by whitespace only: ES matches exactly the terms BM25 does."""


def es_url(url: str | None, fallback: str | None = None) -> str:
    """Flag or config value, then `PRAG_ES_URL`, then what the index manifest recorded."""
    chosen = url or os.environ.get("PRAG_ES_URL") or fallback
    if not chosen:
        raise InputError("no Elasticsearch URL", "pass --es-url http://host:9200 or set PRAG_ES_URL")
    return chosen


def _es_client(url: str) -> Elasticsearch:
    try:
        from elasticsearch import Elasticsearch
    except ImportError:
        raise InputError("the Elasticsearch backend needs the `elasticsearch` package", "pip install 'prag-explorer[es]'") from None
    return Elasticsearch(url, request_timeout=60, retry_on_timeout=True, max_retries=3)


def _es_errors() -> tuple[type[Exception], ...]:
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
    cancel: threading.Event | None = None,
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
            raise InputError(f"Elasticsearch already has a concrete index named {name!r}",
                             "choose another --es-index, or delete that index")
        client.indices.create(index=concrete, **es_index_body(params))
        try:
            done = 0
            report(progress, label, 0, total)
            for ok, item in streaming_bulk(client, actions(), chunk_size=chunk_size, raise_on_error=False):
                if not ok:
                    raise ArtifactError(f"Elasticsearch refused a passage: {item}", "check the server's log")
                done += 1
                if done % REPORT_EVERY == 0:
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
    stat = source.stat()
    info = IndexInfo(
        backend="elasticsearch", passages=len(keys), source=str(source.resolve()), source_size=stat.st_size,
        source_mtime_ns=stat.st_mtime_ns, digest=corpus_digest(keys),
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
        terms = query_terms(query, k)
        if not terms:
            return []
        try:
            response = self.client.search(index=self.index, query={"match": {ES_TERMS_FIELD: " ".join(terms)}}, size=k,
                                          source_includes=["id", "title", "text"])
        except self._errors as exc:
            raise ArtifactError(f"Elasticsearch search failed: {exc}", "check that the server is up") from None
        rows = response["hits"]["hits"]
        passages = [Passage(r["_source"]["id"], r["_source"]["title"], r["_source"]["text"]) for r in rows]
        return ranked_hits(passages, [float(r["_score"] or 0.0) for r in rows], terms)
