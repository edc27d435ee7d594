"""`prag data convert` and `prag data info`: turn public QA releases into the shared QA JSONL, count a QA file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from engine.cli.common import console, handle_errors, is_interactive, progress_bar

FORMAT_NAMES = ("popqa", "nq-swap", "hotpotqa", "2wikimultihopqa", "cwq", "squad")
"""Kept in step with engine.data.convert.FORMATS (not imported here, so `prag --help` stays fast)."""
PROGRESS_FROM_BYTES = 24_000_000
"""Show a progress bar for inputs at least this big (about 2 s of converting)."""

data_app = typer.Typer(
    name="data",
    help="Convert public QA data sets (PopQA, NQ-Swap, HotpotQA, 2WikiMultihopQA, CWQ, SQuAD) to QA JSONL.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@data_app.command("convert")
@handle_errors
def convert_command(
    raw: Annotated[Path, typer.Argument(help="The release file: .json, .jsonl (or .tsv/.csv for popqa), optionally .gz.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="QA JSONL file to write (replaced atomically).")],
    fmt: Annotated[str, typer.Option("--format", "-f", help=f"Release layout: {', '.join(FORMAT_NAMES)}.")],
    limit: Annotated[int | None, typer.Option(help="Stop after N converted questions.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Convert one public release file into QA JSONL (one question per line) for eval, bench and offline.

    Records that cannot become a question (no answer, unanswerable SQuAD v2, duplicate id) are skipped
    and counted. The output appears only when the whole file converted; an interrupted run leaves it as it was.
    """
    from engine.cli.common import cancel_on_sigint
    from engine.data import convert_file
    from engine.errors import Cancelled, InputError

    if limit is not None and limit < 1:
        raise InputError(f"--limit must be at least 1, got {limit}", "pass a positive number or drop --limit")
    raw_path = Path(raw).expanduser()
    big = raw_path.is_file() and raw_path.stat().st_size >= PROGRESS_FROM_BYTES
    try:
        with progress_bar(enabled=big and is_interactive()) as progress, cancel_on_sigint() as cancel:
            rep = convert_file(fmt, raw_path, out, limit=limit, progress=progress, cancel=cancel)
    except KeyboardInterrupt:
        raise Cancelled("interrupted", f"{out} was not written; run the command again") from None
    if as_json:
        typer.echo(json.dumps(rep.to_json(), ensure_ascii=False))
        return
    extras = [f"{rep.with_passages:,} with passages" if rep.with_passages else "no passages"]
    if rep.with_conflict:
        extras.append(f"{rep.with_conflict:,} conflicts")
    console.print(f"converted {rep.converted:,} {fmt} questions ({', '.join(extras)}) in {rep.seconds:.1f}s -> {out}", soft_wrap=True)
    if rep.skipped:
        parts = [f"{n:,} {reason} (first: {rep.first_skipped[reason]})" for reason, n in rep.skipped.most_common()]
        console.print(f"skipped {sum(rep.skipped.values()):,}: " + "; ".join(parts), soft_wrap=True, markup=False)
    console.print(f"[dim]use it with: prag eval --data {out}[/]", soft_wrap=True)


@data_app.command("info")
@handle_errors
def info_command(
    path: Annotated[Path, typer.Argument(help="A QA JSONL file (converted or hand-written).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Count the questions of a QA JSONL file: with passages, with conflicts, by source."""
    from rich.table import Table

    from engine.data import qa_info

    data = qa_info(path)
    if as_json:
        typer.echo(json.dumps(data, ensure_ascii=False))
        return
    table = Table(title=f"QA file {data['path']}", show_header=False)
    table.add_column("Field")
    table.add_column("Value", overflow="fold")
    for key, value in data.items():
        if key == "path":
            continue
        if key == "sources":
            value = ", ".join(f"{name} {count:,}" for name, count in value.items())
        elif isinstance(value, int):
            value = f"{value:,}"
        table.add_row(key.replace("_", " "), str(value))
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
