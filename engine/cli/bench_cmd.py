"""`prag bench`: every performance target measured in one run, with its target and a mark."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from engine.cli.common import console, handle_errors, progress_bar, quiet_libraries, settings_from


def register(app: typer.Typer) -> None:
    @app.command()
    @handle_errors
    def bench(
        quick: Annotated[bool, typer.Option("--quick", help="Fewer repeats and tokens (rougher figures).")] = False,
        as_json: Annotated[bool, typer.Option("--json", help='Print {name: {"value", "unit", "target", "ok"}}.')] = False,
        scale: Annotated[bool, typer.Option("--scale", help="Instead: bm25s on a large synthetic corpus, and encoding on 1 vs 2 Ray workers.")] = False,
        scale_passages: Annotated[int, typer.Option(help="Synthetic passages for --scale (--quick: 100k).")] = 1_000_000,
        scale_dir: Annotated[Optional[Path], typer.Option(help="Where --scale keeps its corpus and index (default: $PRAG_HOME/bench-scale).")] = None,
        ray: Annotated[bool, typer.Option("--ray/--no-ray", help="With --scale: also time encoding on Ray (needs prag-explorer[cluster]).")] = True,
    ) -> None:
        """Measure latency, memory and storage targets on the embedded model and sample corpus."""
        from rich.table import Table

        from engine.bench import figures_json, run_benchmarks, run_scale_benchmarks
        from engine.errors import InputError
        from engine.explorer import Explorer

        settings = settings_from()
        quiet_libraries()
        if scale and scale_passages < 1:
            raise InputError(f"--scale-passages must be at least 1, got {scale_passages}", "e.g. --scale-passages 1000000")
        with progress_bar(enabled=not as_json) as progress:
            if scale:
                passages = min(scale_passages, 100_000) if quick else scale_passages
                figures = run_scale_benchmarks(scale_dir or settings.home / "bench-scale", passages, 4 if quick else 6,
                                               settings.models_dir, ray, progress)
            else:
                explorer = Explorer.open(settings, progress)
                figures = run_benchmarks(explorer, settings.models_dir, quick=quick, progress=progress)
        if as_json:
            typer.echo(json.dumps(figures_json(figures)))
            return
        table = Table(title="prag bench" + (" --scale" if scale else "") + (" --quick" if quick else ""))
        for column in ("Figure", "Value", "Target", "", "Note"):
            table.add_column(column, justify="right" if column in ("Value", "Target") else "left")
        for fig in figures:
            mark = {True: "[green]pass[/]", False: "[red]MISS[/]", None: "[dim]info[/]"}[fig.ok]
            target = f"≤ {fig.target:g} {fig.unit}" if fig.target is not None else "-"
            table.add_row(fig.name, f"{fig.value:.3g} {fig.unit}", target, mark, fig.note)
        console.print(table)
