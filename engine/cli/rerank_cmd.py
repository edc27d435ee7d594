"""`prag rerank-data`: record which passage orderings made the generator answer well."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from engine.cli.common import console, handle_errors, progress_bar, quiet_libraries, settings_from


def register(app: typer.Typer) -> None:
    @app.command("rerank-data")
    @handle_errors
    def rerank_data(
        data: Annotated[Path, typer.Option(help="QA JSONL (shared format).")],
        out: Annotated[Path, typer.Option(help="Output JSONL; rerunning resumes it.")],
        method: Annotated[str, typer.Option(help="Answering method whose quality is recorded.")] = "rag",
        candidates: Annotated[int, typer.Option(help="BM25 candidates per question.")] = 10,
        top_k: Annotated[int, typer.Option("--top-k", help="Passages in the BM25 baseline ordering.")] = 3,
        limit: Annotated[Optional[int], typer.Option(help="Only the first N questions.")] = None,
        corpus: Annotated[Optional[Path], typer.Option(help="Retrieve from this corpus instead of each row's passages.")] = None,
        model: Annotated[Optional[str], typer.Option(help="Local Hugging Face model directory.")] = None,
        translator: Annotated[Optional[Path], typer.Option(help="DyPRAG translator, for the dyprag methods.")] = None,
        max_new_tokens: Annotated[int, typer.Option(help="New tokens per answer.")] = 20,
    ) -> None:
        """Try several passage orderings per question and record each answer's F1 (DynamicRAG-style training data)."""
        from engine.errors import InputError
        from engine.explorer import Explorer
        from engine.methods import parse_methods
        from engine.qa import load_qa
        from engine.rerank_data import collect

        chosen = parse_methods(method)
        if len(chosen) != 1:
            raise InputError(f"--method takes one method, got {len(chosen)}", "e.g. --method rag")
        if candidates < 1 or top_k < 1:
            raise InputError("--candidates and --top-k must be at least 1", "pass positive numbers")
        items = load_qa(data, limit)
        settings = settings_from(model=model, translator=translator, corpus=corpus)
        quiet_libraries()
        with progress_bar() as progress:
            pooled = None if corpus else list({p.id: p for item in items for p in item.passages}.values()) or None
            explorer = Explorer.open(settings, progress, passages=pooled)
            written = collect(explorer, items, chosen[0], out, candidates, top_k, max_new_tokens,
                              use_corpus=corpus is not None, progress=progress)
        console.print(f"Wrote {written} new records to {out} ({len(items)} questions in all).")
