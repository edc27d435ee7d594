"""QA data sets: convert public releases into the shared QA JSON Lines format, and count what a file holds.

`convert_file(fmt, raw, out)` reads one release file in its published layout (`engine.data.convert`
documents each one) and writes QA JSONL atomically; `qa_info(path)` counts a converted file.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from engine.data.convert import FORMATS, ConvertReport, convert_file, guess_format

__all__ = ["FORMATS", "ConvertReport", "convert_file", "guess_format", "qa_info"]


def qa_info(path: Path) -> dict[str, Any]:
    """Counts for a QA JSONL file (validated by `engine.qa.load_qa`: a bad line raises InputError)."""
    from engine.qa import load_qa

    items = load_qa(Path(path))
    sources = Counter(str(item.meta.get("source") or "?") for item in items)
    return {
        "path": str(Path(path).expanduser()),
        "questions": len(items),
        "with_passages": sum(1 for item in items if item.passages),
        "passages": sum(len(item.passages) for item in items),
        "with_conflict": sum(1 for item in items if item.conflict is not None),
        "answers_per_question": round(sum(len(item.answers) for item in items) / len(items), 2),
        "duplicate_ids": len(items) - len({item.id for item in items}),
        "sources": dict(sources.most_common()),
    }
