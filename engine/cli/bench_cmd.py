"""`prag bench`: every performance target measured in one run, with its target and a mark."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from engine.cli import options
from engine.cli.common import console, handle_errors, positive_flag, progress_bar, quiet_libraries, settings_from


def register(app: typer.Typer) -> None:
    @app.command()
    @handle_errors
    def bench(
        quick: Annotated[bool, typer.Option("--quick", help="Fewer repeats and tokens (rougher figures).")] = False,
        as_json: options.AsJson = False,
        scale: Annotated[bool, typer.Option(
            "--scale", help="Instead: bm25s on a large synthetic corpus, and encoding on 1 vs 2 Ray workers.")] = False,
        scale_passages: Annotated[int, typer.Option(help="Synthetic passages for --scale (--quick: 100k).")] = 1_000_000,
        scale_dir: Annotated[Path | None, typer.Option(
            help="Where --scale keeps its corpus and index (default: $PRAG_HOME/bench-scale).")] = None,
        ray: Annotated[bool, typer.Option(
            "--ray/--no-ray", help="With --scale: also time encoding on Ray (needs prag-explorer\\[cluster]).")] = True,
        soak: Annotated[bool, typer.Option(
            "--soak", help="Instead: many questions in one engine session; memory growth after warm-up.")] = False,
        soak_questions: Annotated[int, typer.Option(help="Questions for --soak (--quick: 60).")] = 200,
        recipes: Annotated[bool, typer.Option(
            "--recipes", help="Instead: which PRAG encode recipe stores knowledge (PRAG alone on the sample corpus's "
                              "fictional questions; minutes per recipe).")] = False,
        recipe_variants: Annotated[str | None, typer.Option(
            help="With --recipes: which, separated by ';' (default: the named recipes and single changes to the default).")] = None,
        recipe_questions: Annotated[int | None, typer.Option(
            help="With --recipes: only the first N fictional questions (25 in all).")] = None,
        model: options.Model = None,
        device: options.Device = None,
        dtype: options.Dtype = None,
    ) -> None:
        """Measure latency, memory and storage targets on the embedded model and sample corpus.

        Random PRAG LoRAs, the benchmark's encoded LoRAs and its translator go to a temporary
        folder, never to your LoRA store. --json prints {name: {"value", "unit", "target", "ok"}}.
        """
        import tempfile
        from dataclasses import replace

        from rich.table import Table

        from engine.bench import bench_soak, figures_json, machine_load, model_figure, run_benchmarks, run_scale_benchmarks
        from engine.errors import InputError
        from engine.session import open_explorer, open_model

        settings = settings_from(model=model, device=device, dtype=dtype)
        quiet_libraries()
        if scale + soak + recipes > 1:
            raise InputError("--scale, --soak and --recipes each run instead of the rest", "run one of them at a time")
        positive_flag(recipe_questions, "--recipe-questions")
        if scale:
            positive_flag(scale_passages, "--scale-passages")
        questions = min(soak_questions, 60) if quick else soak_questions
        warmup = 20
        if soak and questions <= warmup:
            raise InputError(f"--soak-questions must be more than the {warmup} warm-up questions, got {soak_questions}",
                             "e.g. --soak-questions 200")
        with progress_bar(enabled=not as_json) as progress, tempfile.TemporaryDirectory(prefix="prag-bench-") as tmp:
            if recipes:
                from engine.bench.recipes import bench_recipes
                names = [n.strip() for n in recipe_variants.split(";") if n.strip()] if recipe_variants else None
                loaded = open_model(settings, progress)
                figures = [model_figure(loaded), *bench_recipes(loaded, names, recipe_questions, progress)]
            elif scale:
                passages = min(scale_passages, 100_000) if quick else scale_passages
                figures = run_scale_benchmarks(scale_dir or settings.home / "bench-scale", passages, 4 if quick else 6,
                                               settings.models_dir, ray, progress)
            else:
                settings = replace(settings, store=Path(tmp) / "loras")  # random LoRAs stay out of the user's store
                explorer = open_explorer(settings, progress)
                if soak:
                    figures = bench_soak(explorer, questions, warmup, progress=progress)
                else:
                    figures = run_benchmarks(explorer, settings.models_dir, quick=quick, progress=progress, workdir=Path(tmp))
                figures.insert(0, model_figure(explorer.loaded))
                figures += machine_load()
        if as_json:
            typer.echo(json.dumps(figures_json(figures)))
            return
        table = Table(title="prag bench" + (" --scale" if scale else "") + (" --soak" if soak else "") + (" --recipes" if recipes else "")
                      + (" --quick" if quick else ""))
        for column in ("Figure", "Value", "Target", "", "Note"):
            table.add_column(column, justify="right" if column in ("Value", "Target") else "left")
        for fig in figures:
            mark = {True: "[green]pass[/]", False: "[red]MISS[/]", None: "[dim]info[/]"}[fig.ok]
            target = f"≤ {fig.target:g} {fig.unit}" if fig.target is not None else "-"
            table.add_row(fig.name, f"{fig.value:.3g} {fig.unit}", target, mark, fig.note)
        console.print(table)
