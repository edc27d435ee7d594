"""`prag ask`: one question, the retrieved passages, and every method's answer side by side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from engine.cli.common import console, existing_path, handle_errors, progress_bar, quiet_libraries, settings_from


def _fraction(detail: str) -> tuple[int, int | None]:
    """"encoding PRAG LoRA 2/3" -> (2, 3)."""
    tail = detail.rsplit(" ", 1)[-1]
    done, _, total = tail.partition("/")
    return (int(done), int(total)) if done.isdigit() and total.isdigit() else (0, None)


def _norm_summary(norms: list[dict] | None) -> str:
    if not norms:
        return "-"
    total = sum(float(row[m]) ** 2 for row in norms for m in ("gate_proj", "up_proj", "down_proj")) ** 0.5
    return f"{total:.3g}"


def render_comparison(comparison) -> None:
    """Passages, then a table of answers (shared with other commands that show one question)."""
    from rich.table import Table

    passages = Table(title=f"Passages for: {comparison.question}", show_lines=True, expand=True)
    passages.add_column("#", justify="right", width=3)
    passages.add_column("BM25", justify="right", width=6)
    passages.add_column("Title", ratio=1)
    passages.add_column("Text", ratio=4)
    for hit in comparison.hits:
        passages.add_row(str(hit.rank), f"{hit.score:.2f}", hit.passage.title, hit.passage.text)
    if not comparison.hits:
        passages.add_row("-", "-", "-", "no passage matched the question")
    console.print(passages)
    rerank = comparison.extra.get("rerank")
    if rerank is not None:
        mark = "[yellow]fallback to BM25 order[/]" if rerank["fallback"] else "[green]reranked[/]"
        console.print(f"Rerank: {mark} — {rerank['note']}; kept {', '.join(rerank['kept']) or '-'}; "
                      f"dropped {', '.join(rerank['dropped']) or '-'}; reranker said: {rerank['raw']!r}")
    answers = Table(title=f"Answers ({comparison.model})", expand=True)
    answers.add_column("Method", no_wrap=True)
    answers.add_column("Answer", ratio=3)
    answers.add_column("Tokens", justify="right")
    answers.add_column("Latency", justify="right")
    answers.add_column("||ΔW||", justify="right")
    for answer in comparison.answers:
        text = f"[red]{answer.error}[/]" if answer.error else (answer.text or "[dim](empty)[/]")
        if answer.status == "cancelled":
            text += " [yellow](cancelled)[/]"
        answers.add_row(answer.label, text, str(answer.tokens), f"{answer.latency_s:.2f}s", _norm_summary(answer.norms))
    console.print(answers)


def register(app: typer.Typer) -> None:
    @app.command()
    @handle_errors
    def ask(
        question: Annotated[str, typer.Argument(help="The question to answer.")],
        methods: Annotated[str, typer.Option("--methods", "-m", help="Comma list of methods, or 'all'.")] = "all",
        top_k: Annotated[Optional[int], typer.Option("--top-k", "-k", help="Passages to retrieve.")] = None,
        corpus: Annotated[Optional[Path], typer.Option(help="Corpus JSONL or folder of .txt (default: sample corpus).")] = None,
        index: Annotated[Optional[Path], typer.Option(help="Index folder from `prag corpus index` (instead of --corpus).")] = None,
        es_index: Annotated[Optional[str], typer.Option(help="Elasticsearch index to retrieve from (URL: --es-url or $PRAG_ES_URL).")] = None,
        es_url: Annotated[Optional[str], typer.Option(help="Elasticsearch URL for --es-index.")] = None,
        model: Annotated[Optional[str], typer.Option(help="Local Hugging Face model directory (default: embedded SmolLM2).")] = None,
        translator: Annotated[Optional[Path], typer.Option(help="DyPRAG translator (.safetensors or reference .pt).")] = None,
        store: Annotated[Optional[Path], typer.Option(help="PRAG LoRA store directory.")] = None,
        max_new_tokens: Annotated[Optional[int], typer.Option(help="New tokens per answer.")] = None,
        rerank: Annotated[str, typer.Option(help="Passage selection: none (BM25 top-k) or dynamic (the LLM picks).")] = "none",
        candidates: Annotated[int, typer.Option(help="BM25 candidates the dynamic reranker chooses from.")] = 10,
        reranker_model: Annotated[Optional[Path], typer.Option(help="Local instruct model for reranking (default: the answering model).")] = None,
        encode: Annotated[bool, typer.Option("--encode/--no-encode", help="Encode missing PRAG LoRAs before answering.")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
    ) -> None:
        """Answer QUESTION with each method on the same model, side by side."""
        from engine.errors import InputError, PragError
        from engine.explorer import Explorer, validate_question
        from engine.methods import parse_methods
        from engine.progress import Progress

        from engine.rerank import check_mode

        chosen = parse_methods(methods)
        validate_question(question)
        rerank = check_mode(rerank)
        if reranker_model is not None and rerank != "dynamic":
            raise InputError("--reranker-model needs --rerank dynamic", "add --rerank dynamic or drop --reranker-model")
        if corpus is not None and (index is not None or es_index is not None):
            raise InputError("--corpus and --index/--es-index both given", "an index already holds its corpus: pass one of them")
        existing_path(translator, "translator")  # before the model loads, not after
        settings = settings_from(top_k=top_k, corpus=corpus, model=model, translator=translator, store=store, max_new_tokens=max_new_tokens,
                                 index=index, es_index=es_index, es_url=es_url)
        quiet_libraries()
        with progress_bar(enabled=not as_json) as progress:
            explorer = Explorer.open(settings, progress)
            if reranker_model is not None:
                from engine.models import load_model
                from engine.rerank import LLMReranker

                explorer.reranker = LLMReranker(load_model(reranker_model, settings.models_dir, progress))
            def show_encoding(update) -> None:
                # On-demand PRAG encoding takes minutes: mirror its "encoding PRAG LoRA i/n" status on the bar.
                if update.answer.status == "encoding" and update.answer.detail:
                    progress(Progress("Encoding PRAG LoRAs", *_fraction(update.answer.detail)))

            comparison = explorer.ask(question, chosen, settings.top_k, settings.max_new_tokens, on_update=show_encoding,
                                      encode_missing=encode, rerank=rerank, candidates=candidates)
        failed = [a for a in comparison.answers if a.error]
        if failed and len(failed) == len(comparison.answers):
            # Nothing was answered (e.g. `--methods prag` with a missing or corrupt LoRA): say why on one line.
            more = f" ({len(failed) - 1} more methods failed)" if len(failed) > 1 else ""
            raise PragError(f"{failed[0].label}: {failed[0].error}{more}")
        if as_json:
            typer.echo(json.dumps(comparison.to_json(), ensure_ascii=False))
        else:
            render_comparison(comparison)
