"""`prag bench`: every performance target measured in one run, with its target and a mark."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from engine.cli.common import console, handle_errors, progress_bar, quiet_libraries, settings_from


def register(app: typer.Typer) -> None:
    @app.command()
    @handle_errors
    def bench(
        quick: Annotated[bool, typer.Option("--quick", help="Fewer repeats and tokens (rougher figures).")] = False,
        as_json: Annotated[bool, typer.Option("--json", help='Print {name: {"value", "unit", "target", "ok"}}.')] = False,
    ) -> None:
        """Measure latency, memory and storage targets on the embedded model and sample corpus."""
        from rich.table import Table

        from engine.bench import figures_json, run_benchmarks
        from engine.explorer import Explorer

        settings = settings_from()
        quiet_libraries()
        with progress_bar(enabled=not as_json) as progress:
            explorer = Explorer.open(settings, progress)
            figures = run_benchmarks(explorer, settings.models_dir, quick=quick, progress=progress)
        if as_json:
            typer.echo(json.dumps(figures_json(figures)))
            return
        table = Table(title="prag bench" + (" --quick" if quick else ""))
        for column in ("Figure", "Value", "Target", "", "Note"):
            table.add_column(column, justify="right" if column in ("Value", "Target") else "left")
        for fig in figures:
            mark = {True: "[green]pass[/]", False: "[red]MISS[/]", None: "[dim]info[/]"}[fig.ok]
            target = f"≤ {fig.target:g} {fig.unit}" if fig.target is not None else "-"
            table.add_row(fig.name, f"{fig.value:.3g} {fig.unit}", target, mark, fig.note)
        console.print(table)
