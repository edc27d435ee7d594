"""`prag eval`: every method on a QA file, EM/F1 table, predictions that resume after an interruption."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from engine.cli.common import cancel_on_sigint, console, existing_path, handle_errors, is_interactive, progress_bar, quiet_libraries, settings_from
from engine.errors import InputError

if TYPE_CHECKING:
    from engine.evaluate import EvalResult


def render_result(result: "EvalResult") -> None:
    """The method x score table, then why methods failed and where the predictions are."""
    from rich.markup import escape
    from rich.table import Table

    headers, rows = result.table()
    table = Table(
        title=f"{result.data.stem}: {result.n} questions ({result.model}, top-{result.top_k}, {result.max_new_tokens} new tokens)",
    )
    for index, header in enumerate(headers):
        table.add_column(header, justify="left" if index == 0 else "right", no_wrap=index == 0)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    for scores in result.methods.values():
        if scores.first_error:
            console.print(f"[red]{scores.label}[/]: {scores.errors} errors, e.g. {escape(scores.first_error)}", soft_wrap=True)
    if result.has_conflicts:
        console.print("[dim]Context / Memory: share of answers to conflict questions that contain the passage's "
                      "(substituted) answer / the original (memory) answer.[/]", soft_wrap=True)
    pace = f", {result.seconds_per_question:.2f} s/question" if result.seconds_per_question is not None else ""
    repaired = f" ({result.repaired} failed or damaged lines asked again)" if result.repaired else ""
    total = result.n * len(result.methods)
    console.print(f"[dim]{result.computed} questions run now{pace}; {result.resumed} of {total} answers resumed from files{repaired}. "
                  f"Predictions: {escape(str(result.to_json()['predictions']))}[/]", soft_wrap=True)


def markdown_table(result: "EvalResult") -> str:
    """The same table as GitHub markdown, for a README or a paper draft."""
    headers, rows = result.table()
    lines = [f"{result.data.name}: {result.n} questions ({result.model}, top-{result.top_k}, {result.max_new_tokens} new tokens)", "",
             "| " + " | ".join(headers) + " |", "|" + "|".join(["---", *["---:"] * (len(headers) - 1)]) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    @app.command("eval")
    @handle_errors
    def eval_command(
        data: Annotated[Optional[Path], typer.Option("--data", "-d", help="QA file (JSONL: id, question, answers, passages?, conflict?).")] = None,
        methods: Annotated[str, typer.Option("--methods", "-m", help="Comma list of methods, or 'all'.")] = "all",
        limit: Annotated[Optional[int], typer.Option(help="Evaluate only the first N questions.")] = None,
        offset: Annotated[int, typer.Option(help="Skip the first N questions (a dev split: --offset 200 --limit 100).")] = 0,
        top_k: Annotated[int, typer.Option("--top-k", "-k", help="Passages per question (BM25 top-k when a row has more).")] = 3,
        corpus: Annotated[Optional[Path], typer.Option(help="Retrieve from this corpus instead of the passages in the file.")] = None,
        index: Annotated[Optional[Path], typer.Option(help="Retrieve from this index folder (`prag corpus index`) instead.")] = None,
        ray: Annotated[bool, typer.Option("--ray", help="Spread questions over a Ray cluster (pip install 'prag-explorer[cluster]').")] = False,
        ray_address: Annotated[Optional[str], typer.Option(help="Ray cluster to join, e.g. auto or ray://head:10001 (default: a local one).")] = None,
        workers: Annotated[int, typer.Option(help="With --ray: workers, each with its own copy of the model.")] = 2,
        out: Annotated[Optional[Path], typer.Option(help="Predictions folder (default: $PRAG_HOME/eval).")] = None,
        model: Annotated[Optional[str], typer.Option(help="Local Hugging Face model directory (default: embedded SmolLM2).")] = None,
        translator: Annotated[Optional[Path], typer.Option(help="DyPRAG translator (.safetensors or reference .pt).")] = None,
        store: Annotated[Optional[Path], typer.Option(help="PRAG LoRA store directory.")] = None,
        max_new_tokens: Annotated[int, typer.Option(help="New tokens per answer (the reference uses 20).")] = 20,
        encode: Annotated[bool, typer.Option("--encode/--no-encode", help="Encode missing PRAG LoRAs on demand (cloze QA pairs, a few seconds a passage, cached); --no-encode reports them as errors.")] = True,
        rerank: Annotated[str, typer.Option(help="Passage selection: none (BM25 top-k) or dynamic (the LLM picks order and count).")] = "none",
        candidates: Annotated[int, typer.Option(help="BM25 candidates the dynamic reranker chooses from.")] = 10,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of the table.")] = False,
        markdown: Annotated[bool, typer.Option("--markdown", help="Print the table as GitHub markdown.")] = False,
    ) -> None:
        """Run each method on each question of a QA file and print EM / F1 per method.

        Predictions are appended per question, so an interrupted run picks up where it stopped.
        Failed answers (e.g. no PRAG LoRA yet) count as empty and are asked again on the next run.
        """
        from engine.evaluate import EvalOptions, evaluate
        from engine.methods import parse_methods

        if data is None:
            raise InputError("no QA file given", "pass --data FILE.jsonl (e.g. one from shared/data)")
        if as_json and markdown:
            raise InputError("--json and --markdown both given", "pass one of them")
        existing_path(corpus, "corpus")
        existing_path(index, "index")
        if corpus is not None and index is not None:
            raise InputError("--corpus and --index both given", "an index already holds its corpus: pass one of them")
        existing_path(translator, "translator")
        options = EvalOptions(
            data=data, methods=tuple(parse_methods(methods)), limit=limit, offset=offset, top_k=top_k, max_new_tokens=max_new_tokens,
            corpus=corpus, index=index, out_dir=out, encode_missing=encode, rerank=rerank.strip().lower(), candidates=candidates,
        )
        settings = settings_from(model=model, translator=translator, store=store)
        quiet_libraries()
        # Ctrl-C: stop after the question in flight (its answers are kept), exit 2; again: at once.
        with progress_bar(enabled=not (as_json or markdown) or is_interactive()) as progress, cancel_on_sigint() as cancel:
            if ray:
                from engine.distributed import RayOptions, evaluate_on_ray

                result = evaluate_on_ray(options, settings, RayOptions(ray_address, workers), progress=progress, cancel=cancel)
            else:
                result = evaluate(options, settings, progress=progress, cancel=cancel)
        if as_json:
            typer.echo(json.dumps(result.to_json(), ensure_ascii=False))
        elif markdown:
            typer.echo(markdown_table(result))
        else:
            render_result(result)
