"""The PRAG augmentation file: passages with their rewrite and QA pairs, in the reference layout.

The file is a JSON list; each item is

    {"passage": str, "<aug>_rewrite": str, "<aug>_qa": [{"question", "answer", "full_answer"}, ...], "title"?: str}

and we read the reference PRAG files as they are: a flat list of such items, or their
per-question layout `[{"test_id", "question", "answer", "passages", "augment": [items]}]`,
which their encode script reads; `layout="questions"` writes that one (one entry per
passage) so their tools read ours. `title` is our only extra key: passages are keyed by
title + text, so keeping it lets `prag ask --corpus` find the LoRAs again. Passages that could not be augmented go to a sidecar
(`<name>.status.json`) with the reason, never silently dropped, and never into the
list itself, where the reference tools would choke on them.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.corpus import Passage, make_passage
from engine.errors import ArtifactError

MIN_QA = 3
"""The reference keeps three QA pairs per passage."""


# --- data --------------------------------------------------------------------------------


@dataclass(frozen=True)
class QAPair:
    question: str
    answer: str
    """A short span, as the passage says it."""
    full_answer: str
    """The answer as a sentence (the reference uses it for chain-of-thought training)."""

    def to_json(self) -> dict[str, str]:
        return {"question": self.question, "answer": self.answer, "full_answer": self.full_answer}


@dataclass
class AugmentRecord:
    """One augmented passage."""

    passage: Passage
    rewrite: str
    qa: list[QAPair]

    def to_json(self, aug_model: str) -> dict[str, Any]:
        item: dict[str, Any] = {
            "passage": self.passage.text,
            f"{aug_model}_rewrite": self.rewrite,
            f"{aug_model}_qa": [pair.to_json() for pair in self.qa],
        }
        if self.passage.title:
            item["title"] = self.passage.title
        return item


@dataclass
class FailedPassage:
    passage: Passage
    reason: str


@dataclass
class AugmentFile:
    """The contents of an augmentation file plus its status sidecar."""

    aug_model: str
    records: list[AugmentRecord] = field(default_factory=list)
    failed: list[FailedPassage] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    """Where the QA pairs and rewrites came from (sidecar only)."""
    layout: str = "items"
    """"items": a flat list of items; "questions": the reference's per-question entries wrapping them."""

    def done_keys(self) -> set[str]:
        return {r.passage.key for r in self.records}

    def failed_keys(self) -> set[str]:
        return {f.passage.key for f in self.failed}


def status_path(path: Path) -> Path:
    return Path(path).with_suffix(".status.json")


def slug(name: str) -> str:
    """A model id as an augmentation key prefix (the reference uses names like llama3.2-1b-instruct)."""
    return re.sub(r"[^a-z0-9.]+", "-", name.lower()).strip("-") or "model"


def _qa_from_json(raw: Any, where: str) -> QAPair:
    if not isinstance(raw, dict) or not isinstance(raw.get("question"), str):
        raise ArtifactError(f"{where}: a QA pair lacks \"question\"", "each QA pair needs question, answer, full_answer")
    answer = raw.get("answer")
    if isinstance(answer, list):  # the reference joins list answers the same way
        answer = ", ".join(str(a) for a in answer)
    answer = "Unknown" if answer is None else str(answer)
    full = raw.get("full_answer")
    return QAPair(raw["question"].strip(), answer.strip(), str(full).strip() if full is not None else f"The answer is {answer.strip()}.")


def _find_aug_model(items: Sequence[dict[str, Any]], path: Path, wanted: str | None) -> str:
    prefixes = sorted({k[: -len("_rewrite")] for item in items for k in item if k.endswith("_rewrite")})
    prefixes = [p for p in prefixes if all(f"{p}_qa" in item for item in items if f"{p}_rewrite" in item)]
    if wanted is not None:
        if wanted not in prefixes:
            raise ArtifactError(f"{path} has no \"{wanted}_rewrite\"/\"{wanted}_qa\" keys (found: {', '.join(prefixes) or 'none'})",
                                "pass --aug-model with one of the names found")
        return wanted
    if not prefixes:
        raise ArtifactError(f"{path} has no \"<model>_rewrite\" and \"<model>_qa\" keys", "is it a PRAG augmentation file?")
    if len(prefixes) > 1:
        raise ArtifactError(f"{path} holds augmentations from several models: {', '.join(prefixes)}", "choose one with --aug-model")
    return prefixes[0]


def load_augment(path: Path, aug_model: str | None = None) -> AugmentFile:
    """Read our file or a reference one (flat list of items, or per-question items with "augment" lists)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ArtifactError(f"augmentation file {path} does not exist", "create it with `prag augment`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path} is not valid JSON ({exc})", "re-create it with `prag augment`") from None
    if not isinstance(data, list):
        raise ArtifactError(f"{path} is not a JSON list", "PRAG augmentation files are JSON lists")
    items: list[dict[str, Any]] = []
    layout = "items"
    for entry in data:
        if isinstance(entry, dict) and isinstance(entry.get("augment"), list):  # reference: one entry per test question
            items.extend(a for a in entry["augment"] if isinstance(a, dict))
            layout = "questions"
        elif isinstance(entry, dict):
            items.append(entry)
    items = [item for item in items if isinstance(item.get("passage"), str) and item["passage"].strip()]
    status = _read_status(path)
    if not items:
        return AugmentFile(aug_model or status.get("aug_model") or "", [], _failed_from(status), status.get("info", {}), layout)
    model = _find_aug_model(items, path, aug_model)
    records: dict[str, AugmentRecord] = {}
    for number, item in enumerate(items):
        if f"{model}_qa" not in item:
            continue
        qa_raw = item[f"{model}_qa"]
        if not isinstance(qa_raw, list):
            raise ArtifactError(f"{path} item {number}: \"{model}_qa\" is not a list", "re-create the file")
        title = item.get("title") if isinstance(item.get("title"), str) else ""
        passage = make_passage(item["passage"], title)
        rewrite = item.get(f"{model}_rewrite")
        records.setdefault(passage.key, AugmentRecord(
            passage, rewrite if isinstance(rewrite, str) else passage.text, [_qa_from_json(q, f"{path} item {number}") for q in qa_raw]))
    return AugmentFile(model, list(records.values()), _failed_from(status), status.get("info", {}), layout)


def _read_status(path: Path) -> dict[str, Any]:
    side = status_path(path)
    if not side.is_file():
        return {}
    try:
        status = json.loads(side.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ArtifactError(f"{side} is corrupt", "delete it; failed passages will be tried again") from None
    return status if isinstance(status, dict) else {}


def _failed_from(status: dict[str, Any]) -> list[FailedPassage]:
    failed = []
    for row in status.get("failed", []):
        if isinstance(row, dict) and isinstance(row.get("passage"), str):
            failed.append(FailedPassage(make_passage(row["passage"], row.get("title") or ""), str(row.get("reason", ""))))
    return failed


def save_augment(path: Path, aug: AugmentFile) -> None:
    """Write the list and its sidecar atomically (list first: it is the one that matters)."""
    from engine.atomic import write_text

    path = Path(path)
    items: list[dict[str, Any]] = [r.to_json(aug.aug_model) for r in aug.records]
    if aug.layout == "questions":
        items = [{"test_id": i, "question": r.qa[0].question if r.qa else "", "answer": [r.qa[0].answer] if r.qa else [],
                  "passages": [r.passage.text], "augment": [{"pid": 0, **item}]}
                 for i, (r, item) in enumerate(zip(aug.records, items, strict=True))]
    write_text(path, json.dumps(items, indent=1, ensure_ascii=False) + "\n")
    status = {
        "format": "prag-explorer-augment-status/1",
        "aug_model": aug.aug_model,
        "passages": len(aug.records),
        "info": aug.info,
        "failed": [{"passage": f.passage.text, "title": f.passage.title, "reason": f.reason} for f in aug.failed],
    }
    write_text(status_path(path), json.dumps(status, indent=1, ensure_ascii=False) + "\n")


AugmentFn = Callable[[Passage, threading.Event | None], "AugmentRecord | FailedPassage"]
"""Augments one passage: a record, or a failure with its reason."""
