"""`prag tui`: the Textual explorer.

Textual and the `tui` package are imported inside the command (an allowed exception
in the import-linter contract), so the rest of the CLI, and `prag --help`, stay
UI-free and fast. The model itself loads inside the app, in a worker, with progress.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from engine.cli.common import existing_path, fail, handle_errors, settings_from


def register(app: typer.Typer) -> None:
    @app.command()
    @handle_errors
    def tui(
        model: Annotated[Optional[str], typer.Option(help="Local Hugging Face model directory (default: embedded SmolLM2).")] = None,
        corpus: Annotated[Optional[Path], typer.Option(help="Corpus JSONL or folder of .txt (default: sample corpus).")] = None,
        index: Annotated[Optional[Path], typer.Option(help="Index folder from `prag corpus index` (instead of --corpus).")] = None,
        translator: Annotated[Optional[Path], typer.Option(help="DyPRAG translator (.safetensors or reference .pt).")] = None,
        data: Annotated[Optional[Path], typer.Option(help="QA JSONL for the questions browser (default: sample_corpus/questions.jsonl).")] = None,
        store: Annotated[Optional[Path], typer.Option(help="PRAG LoRA store directory.")] = None,
        top_k: Annotated[Optional[int], typer.Option("--top-k", "-k", help="Passages to retrieve.")] = None,
        max_new_tokens: Annotated[Optional[int], typer.Option(help="New tokens per answer.")] = None,
        encode: Annotated[bool, typer.Option("--encode/--no-encode", help="Encode missing PRAG LoRAs before answering (slow).")] = False,
        export_dir: Annotated[Optional[Path], typer.Option(help="Where ctrl+s writes exports (default: $PRAG_HOME/exports).")] = None,
        rerank: Annotated[str, typer.Option(help="Passage selection to start with: none (BM25 top-k) or dynamic (the LLM picks; ctrl+g switches).")] = "none",
        candidates: Annotated[int, typer.Option(help="BM25 candidates the dynamic reranker chooses from.")] = 10,
    ) -> None:
        """Open the terminal explorer: passages, six methods side by side, LoRA norms, knowledge conflicts."""
        from engine.errors import InputError
        from engine.rerank import check_mode

        rerank = check_mode(rerank)
        if candidates < 1:
            raise InputError(f"--candidates must be at least 1, got {candidates}", "pass 1 or more")
        existing_path(corpus, "corpus")
        existing_path(index, "index")
        existing_path(translator, "translator")
        existing_path(data, "data")
        if model not in (None, "", "default"):
            existing_path(Path(model), "model")
        settings = settings_from(model=model, corpus=corpus, index=index, translator=translator, store=store, top_k=top_k, max_new_tokens=max_new_tokens)
        from tui.app import PragApp  # deferred: Textual is only needed here

        app = PragApp(settings, data=data, encode_missing=encode, export_dir=export_dir, rerank=rerank, candidates=candidates)
        app.run()
        if app.startup_error is not None:
            raise fail(app.startup_error)
        if app.return_code:
            raise typer.Exit(app.return_code)
