"""Shared CLI plumbing: one console, settings from flags, rich progress from engine events, error exits."""

from __future__ import annotations

import functools
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console

from engine.config import Settings, load_settings
from engine.errors import InputError, PragError
from engine.progress import Progress, ProgressCallback
from engine.validate import positive_or_none

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 2) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    return typer.Exit(code)


def handle_errors(func: F) -> F:
    """PragError -> one red line and exit 2; Ctrl-C -> one line and exit 2 (work so far is kept)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except PragError as exc:
            raise fail(exc.one_line()) from None
        except KeyboardInterrupt:
            raise fail("interrupted; finished work is saved, run the same command again to resume") from None

    return wrapper  # type: ignore[return-value]


_SETTING_FLAGS = {"top_k": "--top-k", "max_new_tokens": "--max-new-tokens"}
"""Numeric settings a flag can set, checked here so the message names the flag."""


def positive_flag(value: Any, flag: str) -> Any:
    """A number flag that must be at least 1 (None = not given): exit 2 with one line naming the flag."""
    return positive_or_none(value, flag, f"pass {flag} 1 or more")


def settings_from(command_defaults: dict[str, Any] | None = None, **flags: Any) -> Settings:
    """Resolve settings and apply the process-wide ones (torch threads: `PRAG_THREADS` or config).

    Precedence: a flag > `PRAG_*` environment > `$PRAG_HOME/config.toml` > `command_defaults`
    (e.g. `prag eval`'s reference top-k and new tokens) > the built-in defaults.
    """
    for name, flag in _SETTING_FLAGS.items():
        positive_flag(flags.get(name), flag)
    settings = load_settings({k: v for k, v in flags.items() if v is not None}, defaults=command_defaults)
    if settings.threads:
        import torch

        torch.set_num_threads(max(1, settings.threads))
    return settings


def quiet_libraries() -> None:
    """transformers prints its own bars and warnings; ours replace them."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


@contextmanager
def progress_bar(enabled: bool = True, transient: bool = True) -> Iterator[ProgressCallback]:
    """A rich progress display fed by engine `Progress` events (one task per label)."""
    from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as RichProgress

    if not enabled:
        yield lambda event: None
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[info]}"), TimeElapsedColumn())
    lock = threading.Lock()
    with RichProgress(*columns, console=err_console, transient=transient) as bar:
        tasks: dict[str, Any] = {}

        def callback(event: Progress) -> None:
            with lock:
                if event.label not in tasks:
                    tasks[event.label] = bar.add_task(event.label, total=event.total, info=event.info)
                bar.update(tasks[event.label], completed=event.done, total=event.total, info=event.info)

        yield callback


def say_first(progress: ProgressCallback, line: str) -> ProgressCallback:
    """`progress`, printing `line` to stderr (plain text) just before the first event: once the cheap
    checks have passed, so a bad input still ends in a single error line."""
    said = threading.Event()

    def callback(event: Progress) -> None:
        if not said.is_set():
            said.set()
            err_console.print(line, soft_wrap=True, markup=False)
        progress(event)

    return callback


def existing_path(value: Path | None, what: str) -> Path | None:
    if value is not None and not Path(value).expanduser().exists():
        raise PragError(f"{what} {value} does not exist", f"check the path given to --{what}")
    return value


def check_reranker_model(reranker_model: Path | None, rerank: str) -> Path | None:
    """--reranker-model only means something with --rerank dynamic; it must exist (checked before any model loads)."""
    if reranker_model is not None and rerank != "dynamic":
        raise InputError("--reranker-model needs --rerank dynamic", "add --rerank dynamic or drop --reranker-model")
    return existing_path(reranker_model, "reranker-model")


def is_interactive() -> bool:
    return sys.stderr.isatty()


@contextmanager
def cancel_on_sigint() -> Iterator[threading.Event]:
    """First Ctrl-C sets the engine's cancel event; the second raises KeyboardInterrupt as usual."""
    cancel = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield cancel
        return
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum, frame) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        if is_interactive():  # a note for the person at the keyboard; logs keep the one error line
            err_console.print("[yellow]stopping after the current step (Ctrl-C again to stop at once)[/]")

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield cancel
    finally:
        signal.signal(signal.SIGINT, previous)


def injection_flags(merge: str, order: str, layers: str | None, lora_span: str,
                    ) -> tuple[str, str, tuple[int, int] | None, str]:
    """--merge, --order, --layers and --lora-span checked (one line and exit 2 when wrong): the same on ask, eval and tui."""
    from engine.methods import LORA_SPANS, MERGES, ORDERS, check_choice, parse_layers

    return (check_choice(merge, MERGES, "merge"), check_choice(order, ORDERS, "passage order"), parse_layers(layers),
            check_choice(lora_span, LORA_SPANS, "LoRA span"))
