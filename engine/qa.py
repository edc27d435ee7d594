"""QA data sets in the shared JSON Lines format.

`{"id", "question", "answers": [...], "passages"?: [{"title","text"}],
"conflict"?: {"original_answers", "substituted_answers"}, "meta"?}`
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.corpus import Passage, _read_text, make_passage
from engine.errors import InputError


@dataclass(frozen=True)
class Conflict:
    original_answers: tuple[str, ...]
    """What the model's memory (the real world) says."""
    substituted_answers: tuple[str, ...]
    """What the given counterfactual passage says."""


@dataclass(frozen=True)
class QAItem:
    id: str
    question: str
    answers: tuple[str, ...]
    passages: tuple[Passage, ...] = ()
    conflict: Conflict | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


def _strings(value: Any, where: str, name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise InputError(f"{where}: \"{name}\" must be a non-empty list of strings", "fix that line of the QA file")
    return tuple(value)


def parse_item(row: Any, where: str) -> QAItem:
    if not isinstance(row, dict):
        raise InputError(f"{where}: expected a JSON object", "each line is one question object")
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise InputError(f"{where}: missing \"question\"", 'each line needs "id", "question" and "answers"')
    answers = _strings(row.get("answers"), where, "answers")
    passages = []
    for index, p in enumerate(row.get("passages") or []):
        if not isinstance(p, dict) or not isinstance(p.get("text"), str):
            raise InputError(f"{where}: passage {index} has no \"text\"", 'passages are {"title", "text"} objects')
        passages.append(make_passage(p["text"], p.get("title") or ""))
    conflict = None
    if isinstance(row.get("conflict"), dict):
        c = row["conflict"]
        conflict = Conflict(
            original_answers=_strings(c.get("original_answers"), where, "conflict.original_answers"),
            substituted_answers=tuple(c.get("substituted_answers") or answers),
        )
    ident = row.get("id")
    return QAItem(
        id=str(ident) if ident not in (None, "") else f"q{where.rsplit(':', 1)[-1]}",
        question=question.strip(),
        answers=answers,
        passages=tuple(passages),
        conflict=conflict,
        meta=row.get("meta") if isinstance(row.get("meta"), dict) else {},
    )


def load_qa(path: Path, limit: int | None = None) -> list[QAItem]:
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"QA file {path} does not exist", "pass a JSONL file in the shared QA format")
    items: list[QAItem] = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where} is not valid JSON ({exc.msg})", "fix or remove that line") from None
        items.append(parse_item(row, where))
        if limit is not None and len(items) >= limit:
            break
    if not items:
        raise InputError(f"QA file {path} has no questions", "add one JSON object per line")
    return items
