"""Progress and cancellation primitives the engine owns.

Long engine calls take a `ProgressCallback` and a `threading.Event`; the CLI turns
the events into rich progress bars, the TUI into ProgressBar widgets.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from engine.errors import Cancelled


@dataclass(frozen=True)
class Progress:
    """One progress report: `done` of `total` steps (total None when unknown)."""

    label: str
    done: int
    total: int | None = None
    info: str = ""

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return min(1.0, self.done / self.total)


ProgressCallback = Callable[[Progress], None]


def report(callback: ProgressCallback | None, label: str, done: int, total: int | None = None, info: str = "") -> None:
    if callback is not None:
        callback(Progress(label, done, total, info))


def check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("cancelled", "run it again to resume")
