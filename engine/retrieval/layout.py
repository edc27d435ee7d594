"""The index folder format shared by every backend: manifest, passage store, corpus reading.

`engine.retrieval.index` builds and opens indexes; the backends (`bm25s`, `elastic`)
read and write their part of the folder with what is here, so neither side imports
the other's module (see the index module's docstring for why the folder looks this way).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.corpus import Passage, load_corpus, passage_from_row, sample_corpus_path
from engine.errors import ArtifactError, CorpusError
from engine.progress import ProgressCallback, report
from engine.retrieval.base import BM25Params, tokenize

MANIFEST = "prag-index.json"
PASSAGES = "passages.jsonl"
OFFSETS = "passages.offsets.npy"
BM25S_DIR = "bm25s"
"""The bm25s backend's files, inside the index folder."""
FORMAT = 1
REPORT_EVERY = 2000
"""Passages between two progress reports (and cancel checks) while reading a corpus."""


@dataclass
class IndexInfo:
    """The manifest of a built index (what `prag corpus info` shows)."""

    backend: str
    passages: int
    """Distinct passages indexed (duplicate ids are kept once, first wins, as `load_corpus` does)."""
    source: str
    """The corpus path it was built from."""
    source_size: int = 0
    source_mtime_ns: int = 0
    digest: str = ""
    """Hash of the sorted passage keys: the same corpus gives the same digest whatever the backend."""
    terms: int = 0
    """Distinct terms (bm25s)."""
    tokens: int = 0
    """Terms over all passages, after stop words (bm25s)."""
    params: dict[str, float] = field(default_factory=lambda: asdict(BM25Params()))
    build_s: float = 0.0
    bytes: int = 0
    """Size of the index folder on disk."""
    es_url: str | None = None
    es_index: str | None = None
    format: int = FORMAT
    created: str = ""
    reused: bool = False
    """Set by `build_index` when an up-to-date index was found and nothing was rebuilt (not stored)."""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("reused")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IndexInfo:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "reused"}
        return cls(**known)


# --- reading corpora as a stream --------------------------------------------------------------


def resolve_corpus(path: Path | None) -> Path:
    path = Path(path).expanduser() if path is not None else sample_corpus_path()
    if not path.exists():
        raise CorpusError(f"corpus {path} does not exist", "pass --corpus with a JSONL file or a folder of .txt files")
    return path


def count_lines(path: Path) -> int:
    """Newline count of a file, read in 8 MB blocks (a progress bar's total, not a passage count)."""
    lines = 0
    last = b"\n"
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 23), b""):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (last != b"\n")


def iter_passages(path: Path) -> Iterator[Passage]:
    """Passages of a JSONL corpus one line at a time (a folder of .txt is read whole: those are small).

    Same rules and messages as `engine.corpus.load_corpus`, without holding the file in memory.
    """
    if path.is_dir():
        yield from load_corpus(path)
        return
    with open(path, "rb") as fh:
        if b"\x00" in fh.read(4096):
            raise CorpusError(f"{path} looks binary, not text", "pass a JSONL file or a folder of .txt files")
        fh.seek(0)
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                raise CorpusError(f"{path}:{number} is not UTF-8", "re-encode the file as UTF-8") from None
            except json.JSONDecodeError as exc:
                raise CorpusError(f"{path}:{number} is not valid JSON ({exc.msg})", "fix or remove that line") from None
            yield passage_from_row(row, f"{path}:{number}")


@dataclass
class CorpusStats:
    """What `prag corpus info` shows for a corpus file or folder."""

    path: str
    passages: int
    duplicates: int
    """Lines whose id repeats an earlier one (dropped when indexing)."""
    characters: int
    tokens: int
    """Terms after stop words, as BM25 sees them."""
    bytes: int


def corpus_stats(path: Path | None, progress: ProgressCallback | None = None) -> CorpusStats:
    path = resolve_corpus(path)
    total = None if path.is_dir() else count_lines(path)
    seen: set[str] = set()
    duplicates = characters = tokens = 0
    for number, passage in enumerate(iter_passages(path), start=1):
        if passage.id in seen:
            duplicates += 1
            continue
        seen.add(passage.id)
        characters += len(passage.title) + len(passage.text)
        tokens += len(tokenize(f"{passage.title} {passage.text}"))
        if number % REPORT_EVERY == 0:
            report(progress, "Reading corpus", number, total)
    report(progress, "Reading corpus", len(seen) + duplicates, len(seen) + duplicates)
    size = sum(p.stat().st_size for p in path.rglob("*.txt")) if path.is_dir() else path.stat().st_size
    return CorpusStats(str(path), len(seen), duplicates, characters, tokens, size)


def corpus_digest(keys: list[str]) -> str:
    """Hash of the passage keys in sorted order, so every backend gives a corpus the same digest.

    Sorts `keys` in place: at 10M passages a sorted copy would be another list of that size.
    """
    keys.sort()
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:12]


# --- the passage store: one JSONL line per passage, read by offset ---------------------------


class PassageFile:
    """Passages of an index by position, read lazily: an offsets array (memory-mapped) and one pread per passage."""

    def __init__(self, folder: Path) -> None:
        import numpy as np

        self.path = Path(folder) / PASSAGES
        try:
            self.offsets = np.load(Path(folder) / OFFSETS, mmap_mode="r")
            self._fd = os.open(self.path, os.O_RDONLY)
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"index {folder} has no readable passage file ({exc})", "build it again with `prag corpus index`") from None

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> Passage:
        if not 0 <= index < len(self):
            raise IndexError(index)
        start, end = int(self.offsets[index]), int(self.offsets[index + 1])
        row = json.loads(os.pread(self._fd, end - start, start))
        return Passage(row["id"], row["title"], row["text"])

    def __iter__(self) -> Iterator[Passage]:
        for index in range(len(self)):
            yield self[index]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        try:
            self.close()
        except (OSError, AttributeError):
            pass




def read_info(folder: Path) -> IndexInfo:
    path = Path(folder).expanduser() / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{folder} is not a prag index (no {MANIFEST})", "build one with `prag corpus index --out DIR`")
    try:
        info = IndexInfo.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, TypeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"index manifest {path} is unreadable ({exc})", "build the index again with --force") from None
    if info.format != FORMAT:
        raise ArtifactError(f"index {folder} has format {info.format}; this version reads {FORMAT}", "build it again with --force")
    return info
