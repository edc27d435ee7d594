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
    """(translator, why there is none): the given file, else the one shipped for the embedded model, on the model's device."""
    from engine.explorer import default_translator_path
    from engine.translator import load_translator

    path = path if path is not None else default_translator_path(loaded.model_id)
    if path is None:
        return None, f"no translator for {loaded.model_id}"
    # On the model's device, in float32 whatever the model's dtype: it is small, and its output is a LoRA.
    return load_translator(path, loaded.arch).to(loaded.placement.device), ""


def open_model(settings: Settings, progress: ProgressCallback | None = None, spec: str | Path | None = None) -> LoadedModel:
    """The answering model (or `spec`, e.g. a reranking model) on the settings' device and dtype."""
    from engine.device import resolve

    placement = resolve(settings.device, settings.dtype)  # before the load: a bad device costs no model load
    return load_model(spec if spec is not None else settings.model, settings.models_dir, progress, placement)


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
    loaded = open_model(settings, progress)
    translator, note = open_translator(settings.translator, loaded)
    store = LoraStore(settings.store_dir, loaded.model_id, config)
    reranker = LLMReranker(open_model(settings, progress, reranker_model)) if reranker_model is not None else None
    return Explorer(loaded, retriever, store, translator, note, encoder=OnDemandEncoder(loaded), reranker=reranker)
