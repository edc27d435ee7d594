"""Checks for the numbers a caller hands the engine (top-k, token budgets, counts, rates).

The engine is a library: its messages name the quantity ("top-k must be at least 1, got 0"),
never a command-line flag. The CLI, which knows its flags, passes the flag as `what`
(`positive(top_k, "--top-k")`) where it checks a flag itself.
"""

from __future__ import annotations

from typing import TypeVar

from engine.errors import InputError

N = TypeVar("N", int, float)


def positive(value: N, what: str, hint: str = "") -> N:
    """`value` when it is at least 1 (an int) or above 0 (a float); else an InputError naming `what`.

    >>> positive(0, "top-k")
    Traceback (most recent call last):
    engine.errors.InputError: top-k must be at least 1, got 0
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{what} must be a number, got {value!r}", hint or "pass a positive number")
    if isinstance(value, int):
        if value < 1:
            raise InputError(f"{what} must be at least 1, got {value}", hint or "pass 1 or more")
    elif not value > 0:  # also refuses NaN
        raise InputError(f"{what} must be positive, got {value:g}", hint or "pass a number above 0")
    return value


def not_negative(value: int, what: str, hint: str = "") -> int:
    """`value` when it is 0 or more; else an InputError naming `what`."""
    if value < 0:
        raise InputError(f"{what} cannot be negative, got {value}", hint or "pass 0 or more")
    return value


def positive_or_none(value: N | None, what: str, hint: str = "") -> N | None:
    """`positive` for optional numbers: None ("no limit", "the default") passes as it is."""
    return None if value is None else positive(value, what, hint)
