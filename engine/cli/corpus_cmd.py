"""`prag corpus index` and `prag corpus info`: build a retrieval index once, see what a corpus or index holds."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from engine.cli import options
from engine.cli.common import console, handle_errors, is_interactive, progress_bar, settings_from
from engine.errors import InputError

corpus_app = typer.Typer(
    name="corpus",
    help="Build retrieval indexes (bm25, bm25s, Elasticsearch) and inspect corpora.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _mb(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"


@corpus_app.command("index")
@handle_errors
def index_command(
    corpus: options.Corpus = None,
    backend: Annotated[str, typer.Option(help="bm25 (rank-bm25, small corpora), bm25s (saved, memory-mapped; 100k-10M passages), "
                                              "elasticsearch, or auto (bm25s from 100k passages).")] = "auto",
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Index folder to write (bm25 / bm25s; optional pointer for elasticsearch).")] = None,
    es_index: options.EsIndex = None,
    es_url: options.EsUrl = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even when the index is up to date with the corpus.")] = False,
    as_json: options.AsJson = False,
) -> None:
    """Index a corpus for retrieval; then `prag ask --index DIR` answers from it.

    The build streams the corpus and replaces DIR only when it is complete, so an
    interrupted build leaves the previous index as it was. Rerunning on an unchanged
    corpus returns at once.
    """
    from engine.cli.common import cancel_on_sigint
    from engine.retrieval.elastic import build_es_index
    from engine.retrieval.index import BACKENDS, build_index

    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}", f"choose one of {', '.join(BACKENDS)}")
    if backend == "elasticsearch" or (backend == "auto" and es_index is not None):
        if es_index is None:
            raise InputError("--backend elasticsearch needs --es-index NAME", "e.g. --es-index prag-passages")
        settings = settings_from(es_url=es_url)
        with progress_bar(enabled=not as_json or is_interactive()) as progress, cancel_on_sigint() as cancel:
            info = build_es_index(corpus, es_index, settings.es_url, progress=progress, cancel=cancel, out=out)
        where = f"Elasticsearch index {es_index}" + (f" (pointer in {out})" if out else "")
    else:
        if out is None:
            raise InputError(f"--backend {backend} needs --out DIR", "e.g. --out ~/indexes/my-corpus")
        if es_index is not None:
            raise InputError("--es-index is for --backend elasticsearch", "drop --es-index or pass --backend elasticsearch")
        with progress_bar(enabled=not as_json or is_interactive()) as progress, cancel_on_sigint() as cancel:
            info = build_index(corpus, out, backend, progress=progress, cancel=cancel, force=force)
        where = str(out)
    if as_json:
        typer.echo(json.dumps(info.to_json()))
        return
    if info.reused:
        console.print(f"index {where} is up to date ({info.backend}, {info.passages:,} passages); nothing to do (--force rebuilds)",
                      soft_wrap=True)
        return
    size = f", {_mb(info.bytes)} on disk" if info.bytes else ""
    console.print(f"indexed {info.passages:,} passages with {info.backend} in {info.build_s:.1f}s{size} -> {where}", soft_wrap=True)
    ask_with = f"--index {out}" if out else f"--es-index {es_index}"
    console.print(f"[dim]ask with: prag ask {ask_with} \"...\"[/]", soft_wrap=True)


@corpus_app.command("info")
@handle_errors
def info_command(
    path: Annotated[Path | None, typer.Argument(
        help="Corpus JSONL, folder of .txt, or an index folder (default: the sample corpus).")] = None,
    as_json: options.AsJson = False,
) -> None:
    """Count passages, terms and bytes of a corpus or a built index."""
    from rich.table import Table

    from engine.retrieval.index import index_or_es_info
    from engine.retrieval.layout import MANIFEST, corpus_stats

    if path is not None and (Path(path).expanduser() / MANIFEST).is_file():
        data = index_or_es_info(Path(path)).to_json()
        title = f"Index {path}"
    else:
        with progress_bar(enabled=not as_json and is_interactive()) as progress:
            data = asdict(corpus_stats(path, progress))
        title = f"Corpus {data['path']}"
    if as_json:
        typer.echo(json.dumps(data, ensure_ascii=False))
        return
    table = Table(title=title, show_header=False)
    table.add_column("Field")
    table.add_column("Value", overflow="fold")
    for key, value in data.items():
        if key in ("source_mtime_ns", "format") or (value in (None, "", 0) and key != "passages"):
            continue
        if key == "bytes":
            value = _mb(int(value))
        elif isinstance(value, float):
            value = f"{value:.2f}"
        elif isinstance(value, int):
            value = f"{value:,}"
        table.add_row(key, str(value))
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(corpus_app, name="corpus")
