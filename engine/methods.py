"""The six methods as data: which prompt, which adapter source."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from engine.errors import InputError


class PromptKind(str, Enum):
    QUESTION = "question"
    """The question alone."""
    PASSAGES = "passages"
    """The retrieved passages, then the question."""


class AdapterSource(str, Enum):
    NONE = "none"
    PRAG = "prag"
    """Stored per-passage LoRAs, merged by rank concatenation (sum of deltas)."""
    DYPRAG = "dyprag"
    """LoRAs generated per passage by the parameter translator, element-wise mean."""


@dataclass(frozen=True)
class Method:
    name: str
    label: str
    prompt: PromptKind
    adapter: AdapterSource
    help: str


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("vanilla", "Vanilla", PromptKind.QUESTION, AdapterSource.NONE, "no context: the model's own memory"),
        Method("rag", "RAG", PromptKind.PASSAGES, AdapterSource.NONE, "passages in the prompt"),
        Method("prag", "PRAG", PromptKind.QUESTION, AdapterSource.PRAG, "per-passage LoRAs summed into the MLPs"),
        Method("prag_combine", "PRAG-combine", PromptKind.PASSAGES, AdapterSource.PRAG, "PRAG LoRAs plus passages in the prompt"),
        Method("dyprag", "DyPRAG", PromptKind.QUESTION, AdapterSource.DYPRAG, "translator-generated LoRAs (mean)"),
        Method("dyprag_combine", "DyPRAG-combine", PromptKind.PASSAGES, AdapterSource.DYPRAG, "DyPRAG LoRAs plus passages in the prompt"),
    )
}

_ALIASES = {"prag-combine": "prag_combine", "dyprag-combine": "dyprag_combine", "icl": "rag", "standard": "rag"}


def parse_methods(spec: str | None) -> list[Method]:
    """'all' or a comma list (order kept, duplicates dropped) -> methods."""
    if spec is None or spec.strip().lower() in ("", "all"):
        return list(METHODS.values())
    chosen: list[Method] = []
    for raw in spec.split(","):
        name = raw.strip().lower()
        if not name:
            continue
        name = _ALIASES.get(name, name)
        if name not in METHODS:
            raise InputError(f"unknown method {raw.strip()!r}", f"choose from {', '.join(METHODS)} or 'all'")
        if METHODS[name] not in chosen:
            chosen.append(METHODS[name])
    if not chosen:
        raise InputError("no method selected", f"choose from {', '.join(METHODS)} or 'all'")
    return chosen


MERGES = ("sum", "mean", "weighted")
"""How the top-k passages' PRAG LoRAs combine: the sum of their deltas (the papers' rank concatenation),
their mean, or a sum weighted by each passage's share of the retrieval scores."""
DEFAULT_MERGE = "weighted"
"""Measured (README, "What a PRAG LoRA stores"): with the facts recipe each LoRA answers from its own
passage, and summed they overrule each other and the passages in the prompt; their mean loses less, and
weighting by retrieval score lets the passage that matches the question speak (with equal scores it is the mean)."""

ORDERS = ("best-first", "best-last")
"""Passage order in the prompt: the papers' (best first), or best nearest the question, where a small model looks."""

LORA_SPANS = ("all", "question")
"""Which prompt tokens a combine method's LoRA acts on: every one (the papers'), or only those from the question on,
so the passages in the prompt are read by the model as it is and the LoRA only answers (README, "What a PRAG LoRA
stores": a LoRA trained on questions alone reads a passage differently from the model it was trained on)."""
DEFAULT_LORA_SPAN = "all"
"""Measured (README, "What a PRAG LoRA stores"): keeping the LoRA off the passages helped PRAG-combine on the fictional
questions and hurt it on NQ-Swap, so the papers' layout stays the default and `question` is there to compare."""


def check_choice(value: str, choices: Sequence[str], what: str) -> str:
    """A lower-cased member of `choices`, or one line saying which values exist."""
    chosen = (value or "").strip().lower()
    if chosen not in choices:
        raise InputError(f"unknown {what} {value!r}", f"choose from {', '.join(choices)}")
    return chosen


def parse_layers(spec: str | None, num_layers: int | None = None) -> tuple[int, int] | None:
    """"A-B" (inclusive, 0-based) or "A" -> (A, B); None/""/"all" -> every layer."""
    if spec is None or spec.strip().lower() in ("", "all"):
        return None
    left, sep, right = spec.strip().partition("-")
    try:
        first, last = int(left), int(right) if sep else int(left)
    except ValueError:
        raise InputError(f"layer range {spec!r} is not A-B", "e.g. 0-14 for the first 15 layers, or 'all'") from None
    if first < 0 or last < first:
        raise InputError(f"layer range {spec!r} is empty or negative", "give 0 <= A <= B, e.g. 10-20")
    if num_layers is not None and last >= num_layers:
        raise InputError(f"layer range {spec!r} ends past the model's last layer ({num_layers - 1})",
                         f"use layers 0-{num_layers - 1}")
    return first, last
