"""The one place that assembles an `Explorer` from settings: model, retriever, LoRA store,
translator, on-demand encoder and (optionally) a separate reranking model.

`prag ask`, `prag eval`, `prag tui` and the benchmarks all open their engine here, so a
setting means the same thing in every command.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from engine.config import Settings
from engine.corpus import Passage, load_corpus
from engine.explorer import Explorer
from engine.models import LoadedModel, load_model
from engine.progress import ProgressCallback, report
from engine.retrieval import BM25Retriever, Retriever
from engine.store import LoraStore

if TYPE_CHECKING:
    from engine.translator import ParameterTranslator


def open_translator(path: Path | None, loaded: LoadedModel) -> tuple[ParameterTranslator | None, str]:
    """(translator, why there is none): the given file, else the one shipped for the embedded model."""
    from engine.explorer import default_translator_path
    from engine.translator import load_translator

    if path is not None:
        return load_translator(path, loaded.arch), ""
    shipped = default_translator_path(loaded.model_id)
    if shipped is None:
        return None, f"no translator for {loaded.model_id}"
    return load_translator(shipped, loaded.arch), ""


def open_retriever(settings: Settings, passages: Sequence[Passage] | None, progress: ProgressCallback | None) -> Retriever:
    """A built index (settings.index / es_index), else BM25 over the given passages or the corpus."""
    from engine.retrieval.index import open_configured_index

    if passages is None:
        index = open_configured_index(settings)
        if index is not None:
            return index
    corpus = list(passages) if passages is not None else load_corpus(settings.corpus)
    report(progress, "Indexing corpus", 0, 1)
    retriever = BM25Retriever(corpus)
    report(progress, "Indexing corpus", 1, 1)
    return retriever


def open_explorer(
    settings: Settings,
    progress: ProgressCallback | None = None,
    passages: Sequence[Passage] | None = None,
    reranker_model: Path | None = None,
) -> Explorer:
    """Everything an answer needs, checked cheapest first (corpus and index fail before the model loads).

    Args:
        passages: answer from these instead of the corpus (eval with each row's own passages).
        reranker_model: a local instruct model for dynamic reranking; None = the answering model.
    """
    from engine.offline.encode import OnDemandEncoder
    from engine.offline.recipes import recipe_config
    from engine.rerank import LLMReranker

    config = recipe_config(settings.recipe)
    retriever = open_retriever(settings, passages, progress)
    loaded = load_model(settings.model, settings.models_dir, progress)
    translator, note = open_translator(settings.translator, loaded)
    store = LoraStore(settings.store_dir, loaded.model_id, config)
    reranker = LLMReranker(load_model(reranker_model, settings.models_dir, progress)) if reranker_model is not None else None
    return Explorer(loaded, retriever, store, translator, note, encoder=OnDemandEncoder(loaded), reranker=reranker)
