"""Convert public QA releases, in their published layouts, into the shared QA JSON Lines format.

Output, one question per line (`engine.qa` loads it):
`{"id", "question", "answers": [...], "passages"?: [{"title","text"}], "conflict"?: {...}, "meta": {...}}`.
`answers` keep source order with duplicates removed; every written line passes `engine.qa.parse_item`.

Layouts each reader expects (one function per format below):

- `popqa`: PopQA (Mallen et al. 2023). `popQA.tsv` from github.com/AlexTMallen/adaptive-retrieval and the
  Hugging Face `akariasai/PopQA` test split (`.tsv`, `.csv`, or a JSON / JSON Lines export): columns
  `id, subj, prop, obj, subj_id, prop_id, obj_id, s_aliases, o_aliases, s_uri, o_uri, s_wiki_title,
  o_wiki_title, s_pop, o_pop, question, possible_answers`, where `possible_answers` is a JSON list inside
  a string (`"[""politician"", ""pol""]"` in the TSV). A JSON array of the same rows with an added
  `paragraphs: [{title, text, is_supporting}]` list (the NeuroPath / HippoRAG subsets) also works; those
  paragraphs become the passages. Required: `question` and `possible_answers`.
- `nq-swap`: NQ-Swap (Longpre et al. 2021, "Entity-Based Knowledge Conflicts"), as the Hugging Face
  `pminervini/NQ-Swap` rows: `question, org_context, org_answer, sub_context, sub_answer` (answers are
  lists of strings, or a string). Each row becomes a conflict record: passages = [sub_context],
  answers = sub_answer, `conflict.original_answers` = org_answer, `meta.original_passage` = org_context.
  Natural Questions HTML tags (`<P>`, `<Td>`, ...) are removed and whitespace collapsed. Ids are
  `nqswap-NNNNN` (row number); `meta.question_group` numbers the distinct questions (one question is
  repeated with several substitutions).
- `hotpotqa`: HotpotQA (Yang et al. 2018) `hotpot_{train_v1.1,dev_distractor_v1,dev_fullwiki_v1}.json`: a JSON
  array of `{_id, question, answer, supporting_facts: [[title, sent_id]], context: [[title, [sentences]]],
  type, level}`. The Hugging Face `hotpot_qa` layout (`id`; `context: {title: [...], sentences: [[...]]}`;
  `supporting_facts: {title, sent_id}`) works too. Questions without `answer` (the test set) are skipped.
- `2wikimultihopqa`: 2WikiMultihopQA (Ho et al. 2020) `train.json` / `dev.json` / `test.json`: the HotpotQA
  shape plus `evidences: [[subject, relation, object]]` (and `entity_ids`); `meta` keeps the evidences.
- `cwq`: ComplexWebQuestions 1.1 (Talmor & Berant 2018) `ComplexWebQuestions_{train,dev,test}.json`: a JSON
  array of `{ID, question, machine_question, answers: [{answer, answer_id, aliases}], sparql, webqsp_ID,
  webqsp_question, compositionality_type}`; answers = each `answer` then its `aliases`. `question` falls back
  to `machine_question`. The RoG export (`id, question, answer: [...]`) also works. No passages.
- `squad`: SQuAD v1.1 / v2.0 (Rajpurkar et al.) `{train,dev}-v{1.1,2.0}.json`: `{version, data: [{title,
  paragraphs: [{context, qas: [{id, question, answers: [{text, answer_start}], is_impossible?}]}]}]}`.
  Unanswerable v2.0 questions are skipped. Hugging Face `squad` / `squad_v2` rows (`id, title, context,
  question, answers: {text: [...], answer_start: [...]}`) also work. passages = [the paragraph], title with
  `_` as spaces.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.data.source import RecordError, Skip, Source
from engine.errors import Cancelled, InputError, PragError
from engine.progress import ProgressCallback, report

Row = dict[str, Any]
Reader = Callable[[Any, int, Source], Iterable["Row | Skip"]]


# -- helpers -------------------------------------------------------------------------------------------------

def strings(*values: Any) -> list[str]:
    """Non-empty stripped strings from strings / lists of strings, duplicates removed, order kept."""
    out: list[str] = []
    for value in values:
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, (int, float)) and not isinstance(item, bool):
                item = str(item)
            if isinstance(item, str) and item.strip() and item.strip() not in out:
                out.append(item.strip())
    return out


def need(record: Any, *keys: str) -> dict[str, Any]:
    """`record` as a dict that has every key in `keys` (else RecordError naming the first missing one)."""
    if not isinstance(record, dict):
        raise RecordError(f"expected a JSON object, got {type(record).__name__}")
    for key in keys:
        if record.get(key) in (None, ""):
            raise RecordError(f'no "{key}" field')
    return record


def text_of(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RecordError(f'"{what}" is not a non-empty string')
    return value.strip()


def json_list(value: Any, what: str) -> list[Any]:
    """A list, or a JSON list inside a string (PopQA's `possible_answers`)."""
    if isinstance(value, list):
        return value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            raise RecordError(f'"{what}" is not a JSON list') from None
        if isinstance(parsed, list):
            return parsed
        if isinstance(parsed, str):
            return [parsed]
    raise RecordError(f'"{what}" is not a list')


_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9_]*(?:\s[^<>]*)?/?>")
_CUT_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9_]*[^<>]*$")
_SPACE = re.compile(r"\s+")


def clean_html(text: str) -> str:
    """Drop Natural Questions markup (`<P>`, `</Td>`, a tag cut off at the end) and collapse whitespace."""
    return _SPACE.sub(" ", _CUT_TAG.sub(" ", _TAG.sub(" ", text))).strip()


def source_id(value: Any, fallback: int) -> str:
    return str(value).strip() if value not in (None, "") and str(value).strip() else str(fallback)


def context_pairs(context: Any) -> list[tuple[str, list[str]]]:
    """HotpotQA / 2Wiki context -> [(title, sentences)]; both the release (list) and HF (dict) layouts."""
    if isinstance(context, dict) and isinstance(context.get("title"), list):
        context = list(zip(context["title"], context.get("sentences") or [], strict=False))
    if not isinstance(context, list):
        raise RecordError('"context" is not a list of [title, sentences]')
    pairs = []
    for entry in context:
        if not isinstance(entry, (list, tuple)) or len(entry) != 2:
            raise RecordError('"context" entries must be [title, [sentences]]')
        title, sentences = entry
        sentences = [sentences] if isinstance(sentences, str) else sentences
        pairs.append((str(title), [s for s in sentences if isinstance(s, str)]))
    return pairs


def fact_titles(facts: Any) -> list[str]:
    if isinstance(facts, dict):
        return strings(facts.get("title") or [])
    return strings([f[0] for f in facts or [] if isinstance(f, (list, tuple)) and f])


# -- readers: one per format -----------------------------------------------------------------------------

def popqa(record: Any, index: int, src: Source) -> Iterator[Row | Skip]:
    row = need(record, "question", "possible_answers")
    answers = strings(json_list(row["possible_answers"], "possible_answers"))
    if not answers:
        yield Skip("no answer")
        return
    ident = source_id(row.get("id"), index)
    out: Row = {"id": f"popqa-{int(ident):04d}" if ident.isdigit() else f"popqa-{ident}",
                "question": text_of(row["question"], "question"), "answers": answers}
    paragraphs = [p for p in row.get("paragraphs") or row.get("passages") or []
                  if isinstance(p, dict) and isinstance(p.get("text"), str) and p["text"].strip()]
    if paragraphs:
        out["passages"] = [{"title": str(p.get("title") or ""), "text": p["text"]} for p in paragraphs]
    meta: Row = {"source": "popqa", "source_index": index}
    for key in ("s_pop", "o_pop"):
        if str(row.get(key, "")).strip().lstrip("-").isdigit():
            meta[key] = int(row[key])
    for key in ("prop", "subj", "obj", "s_wiki_title", "o_wiki_title"):
        if isinstance(row.get(key), str) and row[key]:
            meta[key] = row[key]
    if paragraphs and any("is_supporting" in p for p in paragraphs):
        meta["is_supporting"] = [bool(p.get("is_supporting")) for p in paragraphs]
    out["meta"] = meta
    yield out


def nq_swap(record: Any, index: int, src: Source) -> Iterator[Row | Skip]:
    row = need(record, "question", "sub_context", "sub_answer", "org_answer")
    substituted, original = strings(row["sub_answer"]), strings(row["org_answer"])
    passage = clean_html(text_of(row["sub_context"], "sub_context"))
    if not substituted or not original:
        yield Skip("no answer")
        return
    if not passage:
        yield Skip("empty context")
        return
    question = text_of(row["question"], "question")
    groups = src.state.setdefault("nq-swap groups", {})  # distinct questions, numbered in order of appearance
    group = groups.setdefault(question, len(groups))
    meta: Row = {"source": "nq-swap", "source_index": index, "question_group": group}
    if isinstance(row.get("org_context"), str):
        meta["original_passage"] = clean_html(row["org_context"])
    yield {"id": f"nqswap-{index:05d}", "question": question, "answers": substituted,
           "passages": [{"title": "", "text": passage}],
           "conflict": {"original_answers": original, "substituted_answers": substituted}, "meta": meta}


def _multihop(record: Any, index: int, source: str, extra: tuple[str, ...]) -> Iterator[Row | Skip]:
    row = need(record, "question", "context")
    ident = row.get("_id", row.get("id"))
    if ident in (None, ""):
        raise RecordError('no "_id" field')
    question = text_of(row["question"], "question")
    pairs = context_pairs(row["context"])
    answers = strings(row.get("answer"), row.get("answer_aliases") or [])
    if not answers:
        yield Skip("no answer (test split)")
        return
    supporting = fact_titles(row.get("supporting_facts"))
    passages = [{"title": title, "text": " ".join(s.strip() for s in sents if s.strip())} for title, sents in pairs]
    keep = [(p, p["title"] in supporting) for p in passages if p["text"]]
    meta: Row = {"source": source, "source_index": index}
    for key in ("type", "level", *extra):
        if row.get(key) not in (None, "", []):
            meta[key] = row[key]
    meta["supporting"] = supporting
    meta["is_supporting"] = [flag for _, flag in keep]
    if row.get("supporting_facts"):
        meta["supporting_facts"] = row["supporting_facts"]
    yield {"id": str(ident), "question": question, "answers": answers, "passages": [p for p, _ in keep], "meta": meta}


def hotpotqa(record: Any, index: int, src: Source) -> Iterator[Row | Skip]:
    yield from _multihop(record, index, "hotpotqa", ())


def two_wiki(record: Any, index: int, src: Source) -> Iterator[Row | Skip]:
    yield from _multihop(record, index, "2wikimultihopqa", ("evidences", "entity_ids"))


def cwq(record: Any, index: int, src: Source) -> Iterator[Row | Skip]:
    row = need(record)
    ident = row.get("ID", row.get("id"))
    if ident in (None, ""):
        raise RecordError('no "ID" field')
    question = row.get("question") if isinstance(row.get("question"), str) and row["question"].strip() else row.get("machine_question")
    if not isinstance(question, str) or not question.strip():
        raise RecordError('no "question" or "machine_question" field')
    answers: list[str] = []
    for entry in row.get("answers") or []:
        if isinstance(entry, dict):
            answers = strings(answers, entry.get("answer"), entry.get("aliases") or [])
        else:
            answers = strings(answers, entry)
    answers = strings(answers, row.get("answer") or [])
    if not answers:
        yield Skip("no answer")
        return
    meta: Row = {"source": "cwq", "source_index": index}
    for key in ("machine_question", "compositionality_type", "webqsp_ID", "webqsp_question"):
        if isinstance(row.get(key), str) and row[key]:
            meta[key] = row[key]
    ids = [a.get("answer_id") for a in row.get("answers") or [] if isinstance(a, dict) and a.get("answer_id")]
    if ids:
        meta["answer_ids"] = ids
    yield {"id": str(ident), "question": question.strip(), "answers": answers, "meta": meta}


def _squad_question(qa: Any, context: str, title: str, meta: Row) -> Row | Skip:
    qa = need(qa, "id", "question")
    if qa.get("is_impossible"):
        return Skip("unanswerable (SQuAD v2)")
    answers = qa.get("answers")
    if isinstance(answers, dict):  # Hugging Face: {"text": [...], "answer_start": [...]}
        answers = answers.get("text") or []
    texts = strings([a.get("text") if isinstance(a, dict) else a for a in answers or []])
    if not texts:
        return Skip("unanswerable (SQuAD v2)" if "is_impossible" in qa or isinstance(qa.get("answers"), dict) else "no answer")
    return {"id": str(qa["id"]), "question": text_of(qa["question"], "question"), "answers": texts,
            "passages": [{"title": title.replace("_", " ").strip(), "text": context}], "meta": meta}


def squad(record: Any, index: int, src: Source) -> Iterator[Row | Skip]:
    version = str(src.header.get("version") or "").strip().lstrip("vV")  # "1.1" in v1.1 files, "v2.0" in v2.0
    base: Row = {"source": f"squad-v{version}" if version else "squad"}
    if isinstance(record, dict) and "paragraphs" in record:  # release layout: one article
        title = str(record.get("title") or "")
        if not isinstance(record["paragraphs"], list):
            raise RecordError('"paragraphs" is not a list')
        for p_index, paragraph in enumerate(record["paragraphs"]):
            paragraph = need(paragraph, "context")
            context = paragraph["context"] if text_of(paragraph["context"], "context") else ""  # unstripped: answer_start counts from it
            meta = {**base, "title": title, "paragraph_index": p_index, "source_file": src.path.name}
            for qa in paragraph.get("qas") or []:
                try:
                    yield _squad_question(qa, context, title, dict(meta))
                except RecordError as exc:
                    yield Skip(f"bad question ({exc})")
        return
    row = need(record, "id", "question", "context")  # Hugging Face layout: one question
    title = str(row.get("title") or "")
    meta = {**base, "title": title, "source_file": src.path.name}
    yield _squad_question(row, row["context"] if text_of(row["context"], "context") else "", title, meta)


FORMATS: dict[str, Reader] = {
    "popqa": popqa,
    "nq-swap": nq_swap,
    "hotpotqa": hotpotqa,
    "2wikimultihopqa": two_wiki,
    "cwq": cwq,
    "squad": squad,
}


def guess_format(record: Any) -> str | None:
    """Which release a record looks like (for the hint when --format is wrong)."""
    if not isinstance(record, dict):
        return None
    keys = set(record)
    if "possible_answers" in keys or {"subj", "prop"} <= keys:
        return "popqa"
    if keys & {"sub_context", "org_answer", "sub_answer"}:
        return "nq-swap"
    if "paragraphs" in keys and "title" in keys or "qas" in keys or "data" in keys:
        return "squad"
    if {"context", "question"} <= keys and isinstance(record.get("context"), str):
        return "squad"
    if "evidences" in keys or "entity_ids" in keys:
        return "2wikimultihopqa"
    if "supporting_facts" in keys or "level" in keys:
        return "hotpotqa"
    if keys & {"ID", "machine_question", "webqsp_ID", "compositionality_type"}:
        return "cwq"
    return None


# -- driver ------------------------------------------------------------------------------------------------

@dataclass
class ConvertReport:
    format: str
    source: str
    out: str
    converted: int = 0
    with_passages: int = 0
    with_conflict: int = 0
    skipped: Counter = field(default_factory=Counter)
    first_skipped: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def skip(self, reason: str, where: str) -> None:
        self.skipped[reason] += 1
        self.first_skipped.setdefault(reason, where)

    def to_json(self) -> dict[str, Any]:
        return {"format": self.format, "source": self.source, "out": self.out, "converted": self.converted,
                "with_passages": self.with_passages, "with_conflict": self.with_conflict,
                "skipped": dict(self.skipped), "first_skipped": self.first_skipped, "seconds": round(self.seconds, 3)}


def _not_this_format(src: Source, fmt: str, where: str, why: str, record: Any) -> InputError:
    guess = guess_format(record)
    if guess and guess != fmt:
        hint = f"it looks like {guess}; pass --format {guess}"
    elif isinstance(record, dict) and {"id", "question", "answers"} <= set(record):
        hint = "it is already in the QA JSONL format; use it as it is (`prag data info FILE` counts it)"
    else:
        hint = f"pass the {fmt} release file in its published layout (see `prag data convert --help`)"
    return InputError(f"{src.path} is not a {fmt} file (first record, {where}: {why})", hint)


def convert_file(fmt: str, raw: Path, out: Path, limit: int | None = None,
                 progress: ProgressCallback | None = None, cancel: Any = None) -> ConvertReport:
    """Convert `raw` (a `fmt` release file) into QA JSONL at `out`, written atomically.

    Raises InputError when the format is unknown, the file is missing or unreadable, the first record is
    not in that format's layout, or nothing could be converted; `out` is then left as it was.
    """
    from engine.atomic import atomic_open
    from engine.qa import parse_item

    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}", f"choose one of {', '.join(FORMATS)}")
    src = Source(raw)
    out = Path(out).expanduser()
    if out.exists() and out.resolve() == src.path.resolve():
        raise InputError(f"--out {out} is the input file", "write the converted file somewhere else")
    if src.is_table and fmt != "popqa":
        raise InputError(f"{src.path} is a {src.suffix[1:].upper()} table; {fmt} releases are JSON",
                         f"pass the {fmt} .json or .jsonl file")
    reader = FORMATS[fmt]
    rep = ConvertReport(fmt, str(src.path), str(out))
    started, seen_ids, last_report = time.monotonic(), set(), 0.0
    with atomic_open(out) as fh:
        for index, (where, record) in enumerate(src.records()):
            if cancel is not None and cancel.is_set():
                raise Cancelled("interrupted", f"{out} was not written; run the command again")
            try:
                if isinstance(record, RecordError):
                    raise record
                results = list(reader(record, index, src))
            except RecordError as exc:
                if index == 0:
                    raise _not_this_format(src, fmt, where, str(exc), record) from None
                rep.skip(f"not {fmt} layout ({exc})", where)
                continue
            for result in results:
                if isinstance(result, Skip):
                    rep.skip(str(result), where)
                    continue
                if result["id"] in seen_ids:
                    rep.skip("duplicate id", where)
                    continue
                try:  # the loader's own rules; passages (built above as {title, text} strings) skip its costly hashing
                    parse_item({**result, "passages": []}, where)
                except PragError as exc:
                    rep.skip(f"invalid question ({exc.message.split(': ', 1)[-1]})", where)
                    continue
                seen_ids.add(result["id"])
                fh.write(json.dumps(result, ensure_ascii=False) + "\n")
                rep.converted += 1
                rep.with_passages += bool(result.get("passages"))
                rep.with_conflict += "conflict" in result
                if limit is not None and rep.converted >= limit:
                    break
            if limit is not None and rep.converted >= limit:
                break
            now = time.monotonic()
            if progress is not None and now - last_report > 0.1:
                last_report = now
                report(progress, f"converting {src.path.name}", src.pos // 1_000_000, max(1, src.size // 1_000_000),
                       f"MB, {rep.converted:,} questions")
        if rep.converted == 0:
            reasons = ", ".join(f"{n:,} {r}" for r, n in rep.skipped.most_common(3)) or "the file has no records"
            raise InputError(f"no questions converted from {src.path} ({reasons})",
                             f"check that it is a {fmt} file with answers (test splits often have none)")
    rep.seconds = time.monotonic() - started
    return rep
