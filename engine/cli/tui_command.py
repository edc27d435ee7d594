"""`prag tui`: the Textual explorer.

Textual and the `tui` package are imported inside the command (an allowed exception
in the import-linter contract), so the rest of the CLI, and `prag --help`, stay
UI-free and fast. The model itself loads inside the app, in a worker, with progress.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from engine.cli import options
from engine.cli.common import (
    check_reranker_model,
    existing_path,
    fail,
    handle_errors,
    injection_flags,
    positive_flag,
    settings_from,
)
from engine.methods import DEFAULT_LORA_SPAN, DEFAULT_MERGE


def _with_reranker(reranker_model: Path):
    """The TUI's own engine factory, plus a separate reranking model (`--reranker-model`).

    Loaded with the engine, in the app's worker; the reranker is used whenever dynamic
    reranking is on (the starting --rerank dynamic, or after ctrl+g).
    """
    from tui.session import open_explorer  # deferred, like tui.app below

    def factory(settings, progress):
        from engine.rerank import LLMReranker
        from engine.session import open_model

        explorer = open_explorer(settings, progress)
        explorer.reranker = LLMReranker(open_model(settings, progress, reranker_model))
        return explorer

    return factory


def register(app: typer.Typer) -> None:
    @app.command()
    @handle_errors
    def tui(
        model: options.Model = None,
        device: options.Device = None,
        dtype: options.Dtype = None,
        corpus: options.Corpus = None,
        index: options.Index = None,
        translator: options.Translator = None,
        data: options.Data = None,
        store: options.Store = None,
        top_k: options.TopK = None,
        max_new_tokens: options.MaxNewTokens = None,
        encode: Annotated[bool, typer.Option(
            "--encode/--no-encode", help="Encode missing PRAG LoRAs before answering (slow, once per passage); "
                                         "--no-encode reports them missing.")] = True,
        export_dir: Annotated[Path | None, typer.Option(help="Where ctrl+s writes exports (default: $PRAG_HOME/exports).")] = None,
        rerank: options.Rerank = "none",
        candidates: options.Candidates = 10,
        reranker_model: options.RerankerModel = None,
        recipe: options.Recipe = None,
        layers: options.Layers = None,
        merge: options.Merge = DEFAULT_MERGE,
        order: options.Order = "best-last",
        lora_span: options.LoraSpan = DEFAULT_LORA_SPAN,
    ) -> None:
        """Open the terminal explorer: passages, six methods side by side, LoRA norms, knowledge conflicts.

        The questions browser lists --data (default: sample_corpus/questions.jsonl); --rerank is the
        passage selection the explorer starts with (ctrl+g switches it).
        """
        from engine.device import check_names
        from engine.offline.recipes import recipe_config
        from engine.rerank import check_mode

        rerank = check_mode(rerank)
        merge, order, layer_range, lora_span = injection_flags(merge, order, layers, lora_span)
        positive_flag(candidates, "--candidates")
        check_reranker_model(reranker_model, rerank)
        existing_path(corpus, "corpus")
        existing_path(index, "index")
        existing_path(translator, "translator")
        existing_path(data, "data")
        if model not in (None, "", "default"):
            existing_path(Path(model), "model")
        settings = settings_from(command_defaults={"top_k": options.INTERACTIVE_TOP_K},
                                 device=device, dtype=dtype,
                                 model=model, corpus=corpus, index=index, translator=translator, store=store, top_k=top_k,
                                 max_new_tokens=max_new_tokens, recipe=recipe)
        recipe_config(settings.recipe)  # an unknown recipe, device or dtype fails here, on one line, before the app opens
        check_names(settings.device, settings.dtype)  # whether this machine has it: when the model loads, off the UI thread
        from tui.app import PragApp  # deferred: Textual is only needed here

        app = PragApp(settings, data=data, encode_missing=encode, export_dir=export_dir, rerank=rerank, candidates=candidates,
                      merge=merge, order=order, layers=layer_range, lora_span=lora_span,
                      engine_factory=_with_reranker(reranker_model) if reranker_model is not None else None)
        app.run()
        if app.startup_error is not None:
            raise fail(app.startup_error)
        if app.return_code:
            raise typer.Exit(app.return_code)
