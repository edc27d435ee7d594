"""The `prag` Typer app. Each command lives in its own module and registers itself here.

Heavy imports (torch, transformers, textual) happen inside commands, so `prag --help`
answers at once.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from engine.cli import ask, bench_cmd, corpus_cmd, data_cmd, eval_cmd, offline, rerank_cmd, tui_command

app = typer.Typer(
    name="prag",
    help="Explore parametric RAG: vanilla, RAG, PRAG and DyPRAG side by side.",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)



def package_version() -> str:
    """The installed distribution's version; the source tree's when it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("prag-explorer")
    except PackageNotFoundError:
        from engine import __version__

        return __version__


def _print_version(value: bool) -> None:
    # A parameter callback runs while the arguments are parsed, before Click asks for a command.
    if value:
        typer.echo(f"prag-explorer {package_version()}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.", is_eager=True, callback=_print_version)] = False,
) -> None:
    """Explore parametric RAG: vanilla, RAG, PRAG and DyPRAG side by side."""


COMMAND_MODULES = (ask, eval_cmd, bench_cmd, tui_command, offline, rerank_cmd, corpus_cmd, data_cmd)
for module in COMMAND_MODULES:
    module.register(app)


def main() -> None:
    # Idle OpenMP threads that spin starve each other on small, busy CPUs (training steps measured 5-8x
    # slower); sleeping costs a few ms. Set before torch loads; the user's own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    app()


if __name__ == "__main__":
    main()
