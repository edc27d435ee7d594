"""Passages with stable ids, from JSONL, a folder of .txt files, or the sample corpus.

Ids are content hashes (title + text), so a LoRA or embedding computed for a
passage is found again whichever file or order the passage comes from.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from engine.errors import CorpusError

_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Passage:
    id: str
    """Content hash of title and text (16 hex chars), unless the file gave one."""
    title: str
    text: str

    @property
    def key(self) -> str:
        """Content hash, whatever id the file gave: keys LoRAs and embeddings."""
        return passage_hash(self.title, self.text)


def passage_hash(title: str, text: str) -> str:
    normalized = _SPACES.sub(" ", f"{title.strip()}\n{text.strip()}")
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest()[:16]


def make_passage(text: str, title: str = "", id: str | None = None) -> Passage:
    return Passage(id=id or passage_hash(title, text), title=title.strip(), text=text.strip())


def sample_corpus_dir() -> Path:
    """The bundled demo corpus (a top-level data folder next to the engine package)."""
    return Path(__file__).resolve().parent.parent / "sample_corpus"


def sample_corpus_path() -> Path:
    return sample_corpus_dir() / "passages.jsonl"


def sample_questions_path() -> Path:
    return sample_corpus_dir() / "questions.jsonl"


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CorpusError(f"cannot read {path}: {exc.strerror}", "check the path and its permissions") from None
    if b"\x00" in raw[:4096]:
        raise CorpusError(f"{path} looks binary, not text", "pass a JSONL file or a folder of .txt files")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{path} is not UTF-8 (byte {exc.start})", "re-encode it as UTF-8") from None


def _load_jsonl(path: Path) -> list[Passage]:
    passages = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{path}:{number} is not valid JSON ({exc.msg})", "fix or remove that line") from None
        passages.append(passage_from_row(row, f"{path}:{number}"))
    return passages


def passage_from_row(row: object, where: str) -> Passage:
    """One parsed corpus JSONL line -> a Passage; `where` ("file:line") names it in errors."""
    if not isinstance(row, dict) or not isinstance(row.get("text"), str) or not row["text"].strip():
        raise CorpusError(f"{where} has no non-empty \"text\" field", 'each line needs {"text": ..., "title"?: ..., "id"?: ...}')
    title = row.get("title") or ""
    if not isinstance(title, str):
        raise CorpusError(f"{where} has a non-string \"title\"", "make the title a string")
    ident = row.get("id")
    return make_passage(row["text"], title, str(ident) if ident not in (None, "") else None)


def _load_folder(path: Path) -> list[Passage]:
    files = sorted(path.rglob("*.txt"))
    passages = []
    for file in files:
        text = _read_text(file).strip()
        if text:
            passages.append(make_passage(text, file.stem.replace("_", " ")))
    return passages


def load_corpus(path: Path | None = None) -> list[Passage]:
    """Read passages; `None` is the sample corpus. Raises CorpusError with one clear line."""
    path = Path(path).expanduser() if path is not None else sample_corpus_path()
    if not path.exists():
        raise CorpusError(f"corpus {path} does not exist", "pass --corpus with a JSONL file or a folder of .txt files")
    passages = _load_folder(path) if path.is_dir() else _load_jsonl(path)
    if not passages:
        raise CorpusError(f"corpus {path} has no passages", "add JSONL lines with a \"text\" field or .txt files")
    seen: dict[str, Passage] = {}
    for passage in passages:
        seen.setdefault(passage.id, passage)
    return list(seen.values())
