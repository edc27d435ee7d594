"""`prag ask`: one question, the retrieved passages, and every method's answer side by side."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from engine.cli import options
from engine.cli.common import (
    check_reranker_model,
    console,
    existing_path,
    handle_errors,
    injection_flags,
    positive_flag,
    progress_bar,
    quiet_libraries,
    settings_from,
)
from engine.methods import DEFAULT_LORA_SPAN, DEFAULT_MERGE


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
    where = comparison.extra.get("device"), comparison.extra.get("dtype")
    answers = Table(title=f"Answers ({comparison.model}" + (f", {where[0]} {where[1]})" if all(where) else ")"), expand=True)
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
        methods: options.Methods = "all",
        top_k: options.TopK = None,
        corpus: options.Corpus = None,
        index: options.Index = None,
        es_index: options.EsIndex = None,
        es_url: options.EsUrl = None,
        model: options.Model = None,
        device: options.Device = None,
        dtype: options.Dtype = None,
        translator: options.Translator = None,
        store: options.Store = None,
        max_new_tokens: options.MaxNewTokens = None,
        rerank: options.Rerank = "none",
        candidates: options.Candidates = 10,
        reranker_model: options.RerankerModel = None,
        encode: options.Encode = False,
        recipe: options.Recipe = None,
        score: Annotated[list[str] | None, typer.Option(
            help="A candidate answer to score: every method reports the log-probability its own prompt gives it "
                 "(repeat for several).")] = None,
        layers: options.Layers = None,
        merge: options.Merge = DEFAULT_MERGE,
        order: options.Order = "best-last",
        lora_span: options.LoraSpan = DEFAULT_LORA_SPAN,
        as_json: options.AsJson = False,
    ) -> None:
        """Answer QUESTION with each method on the same model, side by side."""
        from engine.answers import AnswerUpdate
        from engine.errors import InputError, PragError
        from engine.explorer import AskRequest, validate_question
        from engine.methods import parse_methods
        from engine.rerank import check_mode
        from engine.session import open_explorer

        chosen = parse_methods(methods)
        validate_question(question)
        merge, order, layer_range, lora_span = injection_flags(merge, order, layers, lora_span)
        scores = tuple(score or ())
        if any(not text.strip() for text in scores):
            raise InputError("--score was given an empty answer", "pass the candidate answer's text, e.g. --score \"Paris\"")
        rerank = check_mode(rerank)
        positive_flag(candidates, "--candidates")
        check_reranker_model(reranker_model, rerank)
        if corpus is not None and (index is not None or es_index is not None):
            raise InputError("--corpus and --index/--es-index both given", "an index already holds its corpus: pass one of them")
        existing_path(translator, "translator")  # before the model loads, not after
        settings = settings_from(command_defaults={"top_k": options.INTERACTIVE_TOP_K},
                                 device=device, dtype=dtype,
                                 top_k=top_k, corpus=corpus, model=model, translator=translator, store=store, max_new_tokens=max_new_tokens,
                                 index=index, es_index=es_index, es_url=es_url, recipe=recipe)
        quiet_libraries()
        with progress_bar(enabled=not as_json) as progress:
            explorer = open_explorer(settings, progress, reranker_model=reranker_model)

            def show_encoding(event) -> None:
                # On-demand PRAG encoding takes minutes: mirror its progress on the bar.
                if isinstance(event, AnswerUpdate) and event.answer.status == "encoding" and event.answer.progress is not None:
                    progress(event.answer.progress)

            request = AskRequest(question, tuple(chosen), settings.top_k, settings.max_new_tokens, rerank, candidates, encode,
                                 scores=scores, layers=layer_range, merge=merge, order=order, lora_span=lora_span)
            comparison = explorer.ask(request, show_encoding)
        failed = [a for a in comparison.answers if a.error]
        if failed and len(failed) == len(comparison.answers):
            # Nothing was answered (e.g. `--methods prag` with a missing or corrupt LoRA): say why on one line.
            more = f" ({len(failed) - 1} more methods failed)" if len(failed) > 1 else ""
            raise PragError(f"{failed[0].label}: {failed[0].error}{more}")
        if as_json:
            typer.echo(json.dumps(comparison.to_json(), ensure_ascii=False))
        else:
            render_comparison(comparison)
