"""The `prag` Typer app. Each command lives in its own module and registers itself here.

Heavy imports (torch, transformers, textual) happen inside commands, so `prag --help`
answers at once.
"""

from __future__ import annotations

import os

import typer

from engine.cli import ask, bench_cmd, corpus_cmd, eval_cmd, offline, rerank_cmd, tui_command

app = typer.Typer(
    name="prag",
    help="Explore parametric RAG: vanilla, RAG, PRAG and DyPRAG side by side.",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)



@app.callback()
def root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True),
) -> None:
    """Explore parametric RAG: vanilla, RAG, PRAG and DyPRAG side by side."""
    if version:
        from engine import __version__

        typer.echo(f"prag-explorer {__version__}")
        raise typer.Exit()


COMMAND_MODULES = (ask, eval_cmd, bench_cmd, tui_command, offline, rerank_cmd, corpus_cmd)
for module in COMMAND_MODULES:
    module.register(app)


def main() -> None:
    # Idle OpenMP threads that spin starve each other on small, busy CPUs (training steps measured 5-8x
    # slower); sleeping costs a few ms. Set before torch loads; the user's own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    app()


if __name__ == "__main__":
    main()
