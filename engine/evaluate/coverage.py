"""Did the PRAG LoRA ever see the answer? Scores split by whether the gold answer is among the answers
of the QA pairs the recipe trained each passage's LoRA on.

A LoRA can only hold the facts it was trained on; with at most 24 pairs a long passage keeps some
of its facts out, and a generator of pairs misses others (a cast list, a table). Split this way, a
results table says whether PRAG fails where it learned the fact (the injection or the reader) or
where it never did (the pairs). The pairs are made again from each passage, as on-demand encoding
makes them: the record names the store key, which names the recipe and the version of its pairs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.corpus import Passage
from engine.errors import InputError
from engine.metrics import normalize_answer
from engine.qa import QAItem
from engine.store import EncodeConfig


@dataclass(frozen=True)
class CoverageRow:
    """One method's mean F1 on the questions whose answer its LoRAs trained on, and on the rest."""

    method: str
    label: str
    covered_n: int
    covered_f1: float | None
    uncovered_n: int
    uncovered_f1: float | None

    def to_json(self) -> dict[str, Any]:
        return {"covered": {"n": self.covered_n, "f1": _round(self.covered_f1)},
                "not_covered": {"n": self.uncovered_n, "f1": _round(self.uncovered_f1)}}


def recipe_for_key(key: str) -> EncodeConfig:
    """The recipe whose store key a record names; one line when this version makes other pairs."""
    from engine.offline.recipes import RECIPES

    for config in RECIPES.values():
        if config.key() == key:
            return config
    known = ", ".join(f"{name} ({config.key()})" for name, config in RECIPES.items())
    raise InputError(f"the record's PRAG LoRAs ({key}) are not those of a recipe of this version ({known})",
                     "coverage makes the training pairs again, so it needs the recipe and pair version the record was run with")


def trained_answers(passage: Passage, config: EncodeConfig) -> list[tuple[str, ...]]:
    """The normalized answers, as word tuples, of the pairs `config` trains `passage`'s LoRA on."""
    from engine.offline.encode import recipe_pairs

    return [tuple(normalize_answer(pair.answer).split()) for pair in recipe_pairs(passage, config)[0]]


def answer_trained(answers: Iterable[str], trained: Sequence[tuple[str, ...]]) -> bool:
    """A gold answer's words appear, in order, inside a training answer ("Jonah Hill" in "composer Jonah Hill")."""
    for answer in answers:
        gold = tuple(normalize_answer(answer).split())
        if gold and any(_contains(words, gold) for words in trained):
            return True
    return False


def _contains(words: tuple[str, ...], part: tuple[str, ...]) -> bool:
    return any(words[i:i + len(part)] == part for i in range(len(words) - len(part) + 1))


def lora_trained_on(answers: Iterable[str], passages: Iterable[Passage], config: EncodeConfig) -> bool:
    """Whether the PRAG LoRAs of `passages` (under `config`) were trained on one of `answers` (one question; the TUI)."""
    return answer_trained(answers, [words for passage in passages for words in trained_answers(passage, config)])


def covered_questions(items: Sequence[QAItem], used: Mapping[str, Sequence[str]], passages: Mapping[str, Passage],
                      config: EncodeConfig) -> dict[str, bool]:
    """Question id -> whether a gold answer is among the training answers of the passages it was answered with."""
    cache: dict[str, list[tuple[str, ...]]] = {}
    covered = {}
    for item in items:
        trained: list[tuple[str, ...]] = []
        for pid in used.get(item.id, ()):
            passage = passages.get(pid)
            if passage is None:
                continue
            if passage.key not in cache:
                cache[passage.key] = trained_answers(passage, config)
            trained += cache[passage.key]
        covered[item.id] = answer_trained(item.answers, trained)
    return covered


def coverage_rows(covered: Mapping[str, bool], methods: Mapping[str, Any]) -> list[CoverageRow]:
    """Per method (a `MethodScores` with `.scored`), mean F1 over covered and over not-covered questions."""
    rows = []
    for name, scores in methods.items():
        inside = [f1 for qid, (_, f1) in scores.scored.items() if covered.get(qid)]
        outside = [f1 for qid, (_, f1) in scores.scored.items() if qid in covered and not covered[qid]]
        rows.append(CoverageRow(name, scores.label, len(inside), _mean(inside), len(outside), _mean(outside)))
    return rows


def coverage_of(items: Sequence[QAItem], records: Mapping[str, Mapping[str, Mapping[str, Any]]], settings: Mapping[str, Any],
                scores: Mapping[str, Any]) -> tuple[str, list[CoverageRow]]:
    """(the PRAG store key, per-method rows) for answers `records[method][id]` made under `settings` (the
    prediction files' fingerprint); one line when the LoRAs or the passages cannot be known again."""
    from engine.corpus import load_corpus
    from engine.errors import CorpusError

    key = settings.get("prag_lora")
    if not key or not any(name in records for name in ("prag", "prag_combine")):
        raise InputError("no PRAG method in these answers", "coverage is about PRAG LoRAs: evaluate prag or prag_combine")
    config = recipe_for_key(str(key))
    passages = {p.id: p for item in items for p in item.passages}
    corpus = settings.get("corpus")
    where = corpus.get("path") if isinstance(corpus, dict) else None
    if where:
        try:
            passages.update({p.id: p for p in load_corpus(Path(where))})
        except CorpusError:
            pass  # moved, or an index folder: the passages it held are reported missing below
    source = records["prag"] if "prag" in records else records["prag_combine"]
    used = {qid: list(row.get("passages") or []) for qid, row in source.items()}
    missing = sorted({pid for ids in used.values() for pid in ids if pid not in passages})
    if missing:
        raise InputError(f"{len(missing)} passage(s) the answers used are in neither the data file nor "
                         f"{'the corpus ' + str(where) if where else 'a corpus'}",
                         "run from the folder the record was made in (its corpus path is relative), or pass the data file with --data")
    return str(key), coverage_rows(covered_questions(items, used, passages, config), scores)


def coverage_table(rows: Sequence[CoverageRow], key: str) -> tuple[str, list[str], list[list[str]]]:
    """A title, headers and formatted rows (rich or markdown)."""
    first = rows[0] if rows else None
    total = (first.covered_n + first.uncovered_n) if first else 0
    title = (f"Answer among the PRAG LoRAs' training answers ({key}): {first.covered_n if first else 0} of {total} questions")
    headers = ["Method", f"F1, answer trained (n={first.covered_n if first else 0})",
               f"F1, answer not trained (n={first.uncovered_n if first else 0})"]
    body = [[row.label, _fmt(row.covered_f1), _fmt(row.uncovered_f1)] for row in rows]
    return title, headers, body


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
