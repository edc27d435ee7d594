"""Per-layer norm series for the charts and sparklines, from `Answer.norms`.

The engine reports, per answer, the Frobenius norm of each injected MLP delta per
layer; these helpers only pick a module (or combine all three) and group answers by
the adapter they share (PRAG-combine injects the PRAG LoRA, and so on).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from engine.methods import METHODS, AdapterSource
from engine.models import MLP_MODULES

if TYPE_CHECKING:
    from engine.explorer import Answer

MODULE_CHOICES = ("all", "gate_proj", "up_proj", "down_proj")
"""What the norm chart can show: one MLP projection, or all three together."""


def layer_totals(norms: list[dict[str, float | int]] | None, module: str = "all") -> list[float]:
    """Per-layer norm of one module, or of all three together (root of the sum of squares)."""
    if not norms:
        return []
    if module == "all":
        return [math.sqrt(sum(float(row[m]) ** 2 for m in MLP_MODULES)) for row in norms]
    return [float(row[module]) for row in norms]


def adapter_norm_series(answers: list[Answer], module: str = "all") -> dict[str, list[float]]:
    """One series per adapter source present (PRAG, DyPRAG): the combine variants share it."""
    series: dict[str, list[float]] = {}
    for answer in answers:
        method = METHODS.get(answer.method)
        if method is None or method.adapter is AdapterSource.NONE or not answer.norms:
            continue
        label = "PRAG" if method.adapter is AdapterSource.PRAG else "DyPRAG"
        series.setdefault(label, layer_totals(answer.norms, module))
    return series
