"""One exception family for everything a user can get wrong.

Every error carries a message (what is wrong) and a hint (what to do), so the CLI
prints one line and exits 2, and the TUI shows a notification, without tracebacks.
"""

from __future__ import annotations


class PragError(Exception):
    """Base class: an expected failure with a one-line explanation."""

    title = "Error"

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        """What is wrong, naming the offending value or path."""
        self.hint = hint
        """What the user should do about it."""

    def __reduce__(self):
        """Pickle message and hint both, so an error raised in another process (a Ray worker) keeps its hint."""
        return (self.__class__, (self.message, self.hint))

    def one_line(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


class InputError(PragError):
    title = "Invalid input"


class CorpusError(PragError):
    title = "Corpus error"


class ModelError(PragError):
    title = "Model error"


class ArtifactError(PragError):
    """A stored LoRA, translator checkpoint or augmentation file is missing or unusable."""

    title = "Artifact error"


class Cancelled(PragError):
    """Raised inside engine loops when the caller's cancel event is set."""

    title = "Cancelled"
