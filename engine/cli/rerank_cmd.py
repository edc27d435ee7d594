"""`prag rerank-data`: record which passage orderings made the generator answer well."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from engine.cli import options
from engine.cli.common import console, handle_errors, positive_flag, progress_bar, quiet_libraries, settings_from


def register(app: typer.Typer) -> None:
    @app.command("rerank-data")
    @handle_errors
    def rerank_data(
        data: Annotated[Path, typer.Option("--data", "-d", help="QA JSONL file, one question a line; `prag data convert` makes one.")],
        out: Annotated[Path, typer.Option(help="Output JSONL; rerunning resumes it.")],
        method: Annotated[str, typer.Option(help="Answering method whose quality is recorded.")] = "rag",
        candidates: options.Candidates = 10,
        top_k: options.TopK = None,
        limit: Annotated[int | None, typer.Option(help="Only the first N questions.")] = None,
        corpus: options.Corpus = None,
        model: options.Model = None,
        device: options.Device = None,
        dtype: options.Dtype = None,
        translator: options.Translator = None,
        max_new_tokens: options.MaxNewTokens = None,
    ) -> None:
        """Try several passage orderings per question and record each answer's F1 (DynamicRAG-style training data).

        The BM25 baseline ordering holds --top-k passages; --max-new-tokens defaults to the reference's 20
        (a flag wins, then PRAG_TOP_K / PRAG_MAX_NEW_TOKENS, then the config file).
        """
        from engine.errors import InputError
        from engine.methods import parse_methods
        from engine.qa import load_qa
        from engine.rerank_data import collect
        from engine.session import open_explorer

        chosen = parse_methods(method)
        if len(chosen) != 1:
            raise InputError(f"--method takes one method, got {len(chosen)}", "e.g. --method rag")
        positive_flag(candidates, "--candidates")
        positive_flag(limit, "--limit")
        settings = settings_from(model=model, translator=translator, corpus=corpus, top_k=top_k, max_new_tokens=max_new_tokens,
                                 device=device, dtype=dtype,
                                 command_defaults={"max_new_tokens": 20})  # the reference's 20 new tokens, as in `prag eval`
        items = load_qa(data, limit)
        quiet_libraries()
        with progress_bar() as progress:
            pooled = None if corpus else list({p.id: p for item in items for p in item.passages}.values()) or None
            explorer = open_explorer(settings, progress, passages=pooled)
            written = collect(explorer, items, chosen[0], out, candidates, settings.top_k, settings.max_new_tokens,
                              use_corpus=corpus is not None, progress=progress)
        console.print(f"Wrote {written} new records to {out} ({len(items)} questions in all).")
