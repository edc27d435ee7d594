"""The six methods as data: which prompt, which adapter source."""

from __future__ import annotations

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
