"""`prag eval`: every method on a QA file, EM/F1 table, predictions that resume after an interruption."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from engine.cli import options
from engine.cli.common import (
    cancel_on_sigint,
    check_reranker_model,
    console,
    existing_path,
    handle_errors,
    injection_flags,
    is_interactive,
    positive_flag,
    progress_bar,
    quiet_libraries,
    say_first,
    settings_from,
)
from engine.errors import InputError
from engine.methods import DEFAULT_LORA_SPAN, DEFAULT_MERGE
from engine.validate import not_negative

if TYPE_CHECKING:
    from engine.evaluate import EvalResult
    from engine.evaluate.coverage import CoverageRow


def render_result(result: EvalResult) -> None:
    """The method x score table, then why methods failed and where the predictions are."""
    from rich.markup import escape

    headers, rows = result.table()
    _print_table(f"{result.data.stem}: {result.n} questions ({result.model}{', ' + result.placement if result.placement else ''}, "
                 f"top-{result.top_k}, {result.max_new_tokens} new tokens)", headers, rows)
    for scores in result.methods.values():
        if scores.first_error:
            console.print(f"[red]{scores.label}[/]: {scores.errors} errors, e.g. {escape(scores.first_error)}", soft_wrap=True)
    if result.has_conflicts:
        console.print("[dim]Context / Memory: share of answers to conflict questions that contain the passage's "
                      "(substituted) answer / the original (memory) answer.[/]", soft_wrap=True)
    if not result.predictions:  # a --rescore: nothing ran
        console.print(f"[dim]recomputed from {result.n * len(result.methods)} recorded answers; no model was run[/]", soft_wrap=True)
        return
    pace = f", {result.seconds_per_question:.2f} s/question" if result.seconds_per_question is not None else ""
    repaired = f" ({result.repaired} failed or damaged lines asked again)" if result.repaired else ""
    total = result.n * len(result.methods)
    reused = f", {result.reused} copied from --reuse" if result.reused else ""
    answers = f"{result.resumed} of {total} answers resumed from files{reused}{repaired}"
    console.print(f"[dim]{result.computed} questions run now{pace}; {answers}. "
                  f"Predictions: {escape(str(result.to_json()['predictions']))}[/]", soft_wrap=True)


def _print_table(title: str, headers: list[str], rows: list[list[str]], bold: list[bool] | None = None) -> None:
    """A rich table where a figure is never cut to "0.…": each column is as wide as its widest value, the header wraps instead."""
    from rich.table import Table

    table = Table(title=title)
    widths = [max([len(row[index]) for row in rows] + [len(word) for word in header.split()]) for index, header in enumerate(headers)]
    for index, (header, width) in enumerate(zip(headers, widths, strict=True)):
        table.add_column(header, justify="left" if index == 0 else "right", min_width=width)
    for index, row in enumerate(rows):
        table.add_row(*row, style="bold" if bold and bold[index] else None)
    needed = sum(width + 3 for width in widths) + 1  # each column's padding and its border
    console.print(table, width=max(console.width, needed), crop=False)


def _live_coverage(result: EvalResult, options) -> tuple[str, list[CoverageRow]]:
    """--coverage on a run: the answers from this run's prediction files, the passages from the data file or corpus."""
    from engine.evaluate import load_items
    from engine.evaluate.coverage import coverage_of
    from engine.evaluate.predictions import PredictionFile

    records = {}
    for name, path in result.predictions.items():
        stored = PredictionFile(path, name)
        stored.load()
        records[name] = stored.records
    return coverage_of(load_items(options), records, result.settings, result.methods)


def _show(result: EvalResult, as_json: bool, markdown: bool, against: str | None = None,
          coverage: tuple[str, list[CoverageRow]] | None = None) -> None:
    """The table, then the paired comparison (`--against`) and the coverage split (`--coverage`) when asked for."""
    from engine.evaluate.coverage import coverage_table
    from engine.evaluate.paired import paired_table

    deltas = result.paired(against) if against else []
    if as_json:
        payload = result.to_json()
        if against:
            payload["paired"] = {d.method: d.to_json() for d in deltas}
        if coverage is not None:
            payload["coverage"] = {"prag_lora": coverage[0], "methods": {row.method: row.to_json() for row in coverage[1]}}
        typer.echo(json.dumps(payload, ensure_ascii=False))
        return
    if markdown:
        typer.echo(markdown_table(result))
    else:
        render_result(result)
    if against:
        title, headers, rows = paired_table(deltas, result.methods[against].label)
        _show_extra(title, headers, rows, markdown, "Per question, this method's score minus the reference's; an interval that "
                    "holds 0 (Told apart: no) means these questions do not tell the two methods apart.",
                    [row[-1] != "no" for row in rows])
    if coverage is not None:
        title, headers, rows = coverage_table(coverage[1], coverage[0])
        _show_extra(title, headers, rows, markdown, "A question is \"trained\" when a gold answer's words appear in the answer "
                    "of a QA pair its passages' PRAG LoRAs were trained on (the recipe's pairs, made again from each passage).")


def _show_extra(title: str, headers: list[str], rows: list[list[str]], markdown: bool, note: str,
                bold: list[bool] | None = None) -> None:
    """A table after the results table: markdown, or rich with a dim line on how to read it."""
    if markdown:
        typer.echo("\n" + _markdown(title, headers, rows))
        return
    from rich.markup import escape

    _print_table(title, headers, rows, bold)
    console.print(f"[dim]{escape(note)}[/]", soft_wrap=True)


def _record(path: Path, result: EvalResult, options, settings, quiet: bool) -> None:
    """The run's answers to one JSONL file; its table into the translator's sidecar when DyPRAG ran with ours."""
    import shlex
    import sys

    from engine.evaluate import load_items
    from engine.evaluate.record import record_in_sidecar, write_record
    from engine.explorer import default_translator_path
    from engine.methods import AdapterSource

    command = " ".join(shlex.quote(a) for a in ["prag", *sys.argv[1:]])
    written = write_record(path, result, load_items(options), command, options.data)
    translator = settings.translator or default_translator_path(result.model)
    dyprag = any(m.adapter is AdapterSource.DYPRAG for m in options.methods)
    in_sidecar = dyprag and translator is not None and record_in_sidecar(translator, result, Path(path), command)
    if not quiet:
        console.print(f"recorded {written} answers -> {path}" + (f"; table added to {Path(translator).with_suffix('.json')}"
                                                                if in_sidecar else ""), soft_wrap=True)


def markdown_table(result: EvalResult) -> str:
    """The same table as GitHub markdown, for a README or a paper draft."""
    headers, rows = result.table()
    where = f", {result.placement}" if result.placement else ""
    title = f"{result.data.name}: {result.n} questions ({result.model}{where}, top-{result.top_k}, {result.max_new_tokens} new tokens)"
    return _markdown(title, headers, rows)


def _markdown(title: str, headers: list[str], rows: list[list[str]]) -> str:
    lines = [title, "",
             "| " + " | ".join(headers) + " |", "|" + "|".join(["---", *["---:"] * (len(headers) - 1)]) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    @app.command("eval")
    @handle_errors
    def eval_command(
        data: options.Data = None,
        methods: options.Methods = "all",
        limit: Annotated[int | None, typer.Option(help="Evaluate only the first N questions.")] = None,
        offset: Annotated[int, typer.Option(help="Skip the first N questions (a dev split: --offset 200 --limit 100).")] = 0,
        group: Annotated[str | None, typer.Option(
            help="Only questions whose meta.group is this, e.g. fictional in sample_corpus/questions.jsonl.")] = None,
        top_k: options.TopK = None,
        corpus: options.Corpus = None,
        index: options.Index = None,
        ray: options.Ray = False,
        ray_address: options.RayAddress = None,
        workers: options.Workers = 2,
        out: Annotated[Path | None, typer.Option(help="Predictions folder (default: $PRAG_HOME/eval).")] = None,
        model: options.Model = None,
        device: options.Device = None,
        dtype: options.Dtype = None,
        translator: options.Translator = None,
        store: options.Store = None,
        max_new_tokens: options.MaxNewTokens = None,
        encode: options.Encode = True,
        rerank: options.Rerank = "none",
        candidates: options.Candidates = 10,
        reranker_model: options.RerankerModel = None,
        recipe: options.Recipe = None,
        layers: options.Layers = None,
        merge: options.Merge = DEFAULT_MERGE,
        order: options.Order = "best-last",
        lora_span: options.LoraSpan = DEFAULT_LORA_SPAN,
        probes: Annotated[bool, typer.Option(
            "--probes/--no-probes", help="Score the gold (and conflict) answers' log-probability under every method.")] = True,
        as_json: options.AsJson = False,
        markdown: Annotated[bool, typer.Option("--markdown", help="Print the table as GitHub markdown.")] = False,
        batch_questions: Annotated[int | None, typer.Option(
            help="Questions per batched generation, all their methods' rows together (default: 1 on a CPU, 8 on a GPU); "
                 "the same answers as one at a time.")] = None,
        record: Annotated[Path | None, typer.Option(
            help="Also write every answer of this run to one JSONL file (rescore it with --rescore), and the table into the "
                 "translator's sidecar when DyPRAG ran with a translator of ours.")] = None,
        rescore: Annotated[list[Path] | None, typer.Option(
            help="Instead of running: recompute the table of a --record file (repeatable) in seconds, without the model, "
                 "against the gold answers of --data (default: the data file the record names).")] = None,
        coverage: Annotated[bool, typer.Option(
            "--coverage", help="Also split every method's F1 by whether the gold answer is among the answers of the QA pairs "
                               "the PRAG LoRAs were trained on (made again from each passage); on a run or a --rescore.")] = False,
        reuse: Annotated[Path | None, typer.Option(
            help="Copy from this --record file the answers of every method whose settings this run shares instead of "
                 "computing them (after a new translator only DyPRAG runs; vanilla, RAG and PRAG come from the record).")] = None,
        against: Annotated[str | None, typer.Option(
            help="Also compare every method with this one (e.g. rag) question by question: mean F1 and EM differences "
                 "with 95% bootstrap intervals over question groups (NQ-Swap's substitutions of one question resample together).")] = None,
    ) -> None:
        """Run each method on each question of a QA file and print EM / F1 per method.

        Predictions are appended per question, so an interrupted run picks up where it stopped.
        Failed answers (e.g. no PRAG LoRA yet) count as empty and are asked again on the next run.

        --top-k and --max-new-tokens: a flag wins, then PRAG_TOP_K / PRAG_MAX_NEW_TOKENS, then
        top_k / max_new_tokens in $PRAG_HOME/config.toml, then the reference values (3 passages,
        20 new tokens). The predictions file names carry both, so runs with other values never mix.

        With PRAG methods and --encode (the default), passages without a PRAG LoRA get one first
        (the recipe's QA pairs from the passage itself, 10-25 s a passage on 2 CPU cores), written
        to the LoRA store and reused by later runs.
        """
        from engine.evaluate import REFERENCE_MAX_NEW_TOKENS, REFERENCE_TOP_K, EvalOptions, evaluate
        from engine.methods import AdapterSource, parse_methods
        from engine.rerank import check_mode

        if as_json and markdown:
            raise InputError("--json and --markdown both given", "pass one of them")
        if against is not None:
            picked = parse_methods(against) if against.strip().lower() not in ("", "all") else []
            if len(picked) != 1:
                raise InputError(f"--against {against!r}: name one method to compare the others with", "e.g. --against rag")
            against = picked[0].name
        if rescore:
            from engine.evaluate.record import rescore as rescore_record
            from engine.evaluate.record import rescore_with_coverage

            for path in rescore:
                result, split = rescore_with_coverage(path, data) if coverage else (rescore_record(path, data), None)
                _show(result, as_json, markdown, against, split)
            return
        if data is None:
            raise InputError("no QA file given", "pass --data FILE.jsonl (`prag data convert` makes one from a public QA release)")
        existing_path(corpus, "corpus")
        existing_path(index, "index")
        if corpus is not None and index is not None:
            raise InputError("--corpus and --index both given", "an index already holds its corpus: pass one of them")
        existing_path(translator, "translator")
        existing_path(reuse, "reuse")
        rerank = check_mode(rerank)
        positive_flag(limit, "--limit")
        not_negative(offset, "--offset", "pass --offset 0 or more")
        positive_flag(candidates, "--candidates")
        positive_flag(workers, "--workers")
        check_reranker_model(reranker_model, rerank)
        chosen = tuple(parse_methods(methods))
        if coverage and not any(m.adapter is AdapterSource.PRAG for m in chosen):
            raise InputError("--coverage is about PRAG LoRAs, and --methods has no PRAG method", "add prag or prag_combine")
        if against is not None and against not in [m.name for m in chosen]:
            raise InputError(f"--against {against}: that method is not among --methods", f"add {against} to --methods")
        merge, order, layer_range, lora_span = injection_flags(merge, order, layers, lora_span)
        settings = settings_from(model=model, translator=translator, store=store, top_k=top_k, max_new_tokens=max_new_tokens,
                                 device=device, dtype=dtype,
                                 recipe=recipe,
                                 command_defaults={"top_k": REFERENCE_TOP_K, "max_new_tokens": REFERENCE_MAX_NEW_TOKENS})
        positive_flag(batch_questions, "--batch-questions")
        if batch_questions is None:
            from engine.device import resolve

            batch_questions = 1 if resolve(settings.device, settings.dtype).device == "cpu" else 8
        eval_options = EvalOptions(
            data=data, methods=chosen, limit=limit, offset=offset, group=group, top_k=settings.top_k,
            max_new_tokens=settings.max_new_tokens,
            corpus=corpus, index=index, out_dir=out, encode_missing=encode, rerank=rerank, candidates=candidates,
            reranker_model=reranker_model, probes=probes, merge=merge, order=order, layers=layer_range, lora_span=lora_span,
            batch_questions=batch_questions, reuse=reuse,
        )
        quiet_libraries()
        # Ctrl-C: stop after the question in flight (its answers are kept), exit 2; again: at once.
        with progress_bar(enabled=not (as_json or markdown) or is_interactive()) as progress, cancel_on_sigint() as cancel:
            if encode and any(m.adapter is AdapterSource.PRAG for m in chosen):
                # Said once the QA file has passed its checks (so a bad file still fails on one line), before any model loads.
                progress = say_first(progress, f"note: PRAG LoRAs missing from the store {settings.store_dir} are encoded first "
                                               f"(recipe {settings.recipe}: QA pairs from the passage's own sentences, "
                                               "10-25 s a passage on 2 CPU cores, kept for later runs); "
                                               "--no-encode reports them as errors instead")
            if ray:
                from engine.distributed import RayOptions, evaluate_on_ray

                result = evaluate_on_ray(eval_options, settings, RayOptions(ray_address, workers), progress=progress, cancel=cancel)
            else:
                result = evaluate(eval_options, settings, progress=progress, cancel=cancel)
        if record is not None:
            _record(record, result, eval_options, settings, as_json or markdown)
        _show(result, as_json, markdown, against, _live_coverage(result, eval_options) if coverage else None)
