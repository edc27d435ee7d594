"""The `prag` command line: thin Typer commands over the engine."""
