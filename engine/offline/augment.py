"""PRAG stage 1: one rewrite and a few QA pairs per passage, in the reference file layout.

The file is a JSON list; each item is

    {"passage": str, "<aug>_rewrite": str, "<aug>_qa": [{"question", "answer", "full_answer"}, ...], "title"?: str}

and we read the reference PRAG files as they are: a flat list of such items, or their
per-question layout `[{"test_id", "question", "answer", "passages", "augment": [items]}]`,
which their encode script reads; `layout="questions"` writes that one (one entry per
passage) so their tools read ours. `title` is our only extra key: passages are keyed by title + text, so keeping it lets `prag ask --corpus` find
the LoRAs again. Passages that could not be augmented go to a sidecar
(`<name>.status.json`) with the reason, never silently dropped, and never into the
list itself, where the reference tools would choke on them.

Two sources of QA pairs:
- the loaded LLM, prompted with the intent of the reference prompts (a JSON list of
  three QA pairs, a rewrite that keeps names and terms); its output is parsed
  leniently, validated against the passage and retried with sampling;
- gold QA pairs from a QA JSONL file whose passages carry several questions each
  (SQuAD-style), grouped by passage text: fast and exact.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from engine.corpus import Passage, load_corpus, make_passage
from engine.errors import ArtifactError, Cancelled, InputError
from engine.progress import ProgressCallback, check_cancel, report

if TYPE_CHECKING:
    from engine.models import LoadedModel
    from engine.qa import QAItem

MIN_QA = 3
"""The reference keeps three QA pairs per passage."""
_SPACES = re.compile(r"\s+")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


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
                  "passages": [r.passage.text], "augment": [{"pid": 0, **item}]} for i, (r, item) in enumerate(zip(aug.records, items))]
    write_text(path, json.dumps(items, indent=1, ensure_ascii=False) + "\n")
    status = {
        "format": "prag-explorer-augment-status/1",
        "aug_model": aug.aug_model,
        "passages": len(aug.records),
        "info": aug.info,
        "failed": [{"passage": f.passage.text, "title": f.passage.title, "reason": f.reason} for f in aug.failed],
    }
    write_text(status_path(path), json.dumps(status, indent=1, ensure_ascii=False) + "\n")


# --- validation -------------------------------------------------------------------------------


def _norm(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


def sentence_with(passage: str, answer: str) -> str | None:
    """The passage sentence that contains `answer` (a natural full answer), if any."""
    target = _norm(answer)
    for sentence in re.split(r"(?<=[.!?])\s+", passage.strip()):
        if target and target in _norm(sentence):
            return sentence.strip()
    return None


def validate_pairs(raw: Iterable[dict[str, Any]], passage: str, exclude: Iterable[str] = ()) -> tuple[list[QAPair], list[str]]:
    """Keep QA pairs a small model got right: grounded answer, real question, no duplicates.

    Returns (valid pairs, reasons for the rejected ones).
    """
    passage_norm = f" {_norm(passage)} "
    banned = {_norm(q) for q in exclude}
    seen_q: set[str] = set()
    seen_a: set[str] = set()
    valid: list[QAPair] = []
    reasons: list[str] = []
    for item in raw:
        question = str(item.get("question") or "").strip()
        answer = item.get("answer")
        if isinstance(answer, list):
            answer = ", ".join(str(a) for a in answer)
        answer = str(answer or "").strip().rstrip(".").strip()
        q_norm, a_norm = _norm(question), _norm(answer)
        if len(q_norm.split()) < 3:
            reasons.append("question too short")
        elif not answer:
            reasons.append("empty answer")
        elif len(a_norm.split()) > 12:
            reasons.append("answer is not a short span")
        elif f" {a_norm} " not in passage_norm:
            reasons.append(f"answer {answer!r} is not in the passage")
        elif q_norm in banned or q_norm in seen_q:
            reasons.append("repeated question")
        elif a_norm in q_norm:
            reasons.append("question gives its answer away")
        elif a_norm in seen_a:
            reasons.append("repeated answer")
        else:
            seen_q.add(q_norm)
            seen_a.add(a_norm)
            if not question.endswith("?"):
                question += "?"
            full = str(item.get("full_answer") or "").strip()
            if not full or a_norm not in _norm(full):
                full = sentence_with(passage, answer) or f"The answer is {answer}."
            valid.append(QAPair(question, answer, full))
    return valid, reasons


# --- lenient parsing of LLM output -------------------------------------------------------------

_OBJECT = re.compile(r"\{[^{}]*\}", re.S)
_FIELD = re.compile(r'"?(question|answer|full_answer)"?\s*:\s*"((?:[^"\\]|\\.)*)"', re.S)
_LINE_QA = re.compile(r"(?im)^\s*(?:\d+[.)]\s*)?(question|q|answer|a|full[ _-]?answer)\s*[:\-]\s*(.+?)\s*$")


def parse_qa_output(text: str) -> list[dict[str, Any]]:
    """QA dicts from whatever a small model wrote: a JSON list, loose objects, or Question:/Answer: lines."""
    start = text.find("[")
    if start >= 0:
        chunk = text[start:]
        end = chunk.rfind("]")
        for candidate in ((chunk[: end + 1],) if end >= 0 else ()) + (chunk.rstrip().rstrip(",") + "]",):
            try:
                data = json.loads(re.sub(r",\s*([\]}])", r"\1", candidate))
            except json.JSONDecodeError:
                continue
            if isinstance(data, list):
                found = [d for d in data if isinstance(d, dict)]
                if found:
                    return found
    objects = []
    for block in _OBJECT.findall(text):  # objects one by one, tolerating missing commas between fields
        fields = {name: bytes(value, "utf-8").decode("unicode_escape", "ignore") if "\\" in value else value
                  for name, value in _FIELD.findall(block)}
        if "question" in fields:
            objects.append(fields)
    if objects:
        return objects
    pairs: list[dict[str, Any]] = []
    for label, value in _LINE_QA.findall(text):
        label = label.lower()
        if label in ("question", "q"):
            pairs.append({"question": value})
        elif pairs and label in ("answer", "a") and "answer" not in pairs[-1]:
            pairs[-1]["answer"] = value
        elif pairs and label.startswith("full"):
            pairs[-1]["full_answer"] = value
    return [p for p in pairs if "answer" in p]


# --- sources ------------------------------------------------------------------------------------


def passages_from(corpus: Path | None = None, data: Path | None = None, questions: int | None = None) -> list[Passage]:
    """Passages of a corpus, or the distinct passages of a QA file (of its first `questions` rows), in file order."""
    if corpus is not None:
        return load_corpus(corpus)
    if data is None:
        raise InputError("no passages to augment", "pass --corpus PATH or --data QA.jsonl")
    from engine.qa import load_qa

    seen: dict[str, Passage] = {}
    for item in load_qa(data, questions):
        for passage in item.passages:
            seen.setdefault(passage.key, passage)
    if not seen:
        raise InputError(f"{data} has no passages", "its lines need \"passages\": [{\"title\", \"text\"}]")
    return list(seen.values())


def sample_passages(passages: Sequence[Passage], count: int, seed: int = 0) -> list[Passage]:
    """A seeded random `count` of them in their original order: a spread over every article, not the first few."""
    chosen = sorted(random.Random(seed).sample(range(len(passages)), min(count, len(passages))))
    return [passages[i] for i in chosen]


def gold_qa_index(items: Sequence["QAItem"]) -> dict[str, list["QAItem"]]:
    """Questions grouped by the text of their passage (whitespace-normalized, title ignored)."""
    index: dict[str, list["QAItem"]] = {}
    for item in items:
        for passage in item.passages:
            index.setdefault(_SPACES.sub(" ", passage.text.strip()), []).append(item)
    return index


def gold_pairs(passage: Passage, questions: Sequence["QAItem"]) -> list[QAPair]:
    """Gold QA pairs in file order: the first answer is the span; its passage sentence the full answer."""
    pairs, seen = [], set()
    for item in questions:
        if item.question in seen:
            continue
        seen.add(item.question)
        answer = item.answers[0].strip()
        pairs.append(QAPair(item.question, answer, sentence_with(passage.text, answer) or f"The answer is {answer}."))
    return pairs


# A light, deterministic rewrite: common words swapped for near-synonyms in one pass.
# Only lower-case occurrences change, so names ("Large Hadron Collider"), numbers and
# terms stay exactly as written.
_SYNONYMS = {
    "about": "around", "approximately": "about", "roughly": "about", "nearly": "almost", "almost": "nearly",
    "large": "big", "big": "large", "largest": "biggest", "biggest": "largest", "small": "little",
    "huge": "enormous", "tiny": "very small", "many": "numerous", "numerous": "many", "several": "a number of",
    "various": "assorted", "often": "frequently", "frequently": "often", "usually": "normally",
    "sometimes": "at times", "quickly": "rapidly", "rapidly": "quickly", "slowly": "gradually",
    "famous": "well-known", "well-known": "famous", "important": "significant", "significant": "important",
    "major": "key", "main": "principal", "principal": "main", "primary": "chief", "chief": "primary",
    "however": "but", "because": "since", "although": "even though", "though": "although",
    "during": "in the course of", "near": "close to", "around": "about", "between": "among",
    "began": "started", "begin": "start", "begins": "starts", "started": "began", "start": "begin",
    "finished": "completed", "completed": "finished", "ended": "finished", "built": "constructed",
    "constructed": "built", "created": "made", "made": "created", "founded": "established",
    "established": "founded", "helped": "assisted", "help": "assist", "shows": "depicts", "showed": "displayed",
    "received": "got", "gave": "handed", "give": "provide", "gives": "provides", "provides": "gives",
    "provided": "supplied", "used": "employed", "uses": "employs", "use": "employ",
    "located": "situated", "situated": "located", "lies": "sits", "sits": "lies", "lived": "resided",
    "lives": "dwells", "live": "dwell", "moved": "relocated", "died": "passed away", "won": "claimed",
    "defeated": "beat", "beat": "defeated", "earn": "gain", "earned": "gained", "emphasized": "stressed",
    "temporarily": "for a time", "tradition": "custom", "prominently": "clearly", "feature": "display",
    "featured": "included", "includes": "contains", "include": "contain", "included": "contained",
    "contains": "holds", "holds": "contains", "held": "staged", "determine": "decide", "decided": "chose",
    "chose": "picked", "known as": "called", "called": "named", "named after": "named for",
    "the first": "the earliest", "first": "initial", "last": "final", "final": "last", "later": "subsequently",
    "afterwards": "later", "then": "next", "also": "as well", "still": "yet", "today": "nowadays",
    "ancient": "very old", "modern": "present-day", "old": "aged", "new": "recent", "recent": "new",
    "whole": "entire", "entire": "whole", "each": "every", "every": "each", "city": "town",
    "country": "nation", "nation": "country", "people": "persons", "children": "kids", "area": "region",
    "region": "area", "part": "portion", "piece": "bit", "type": "kind", "kind": "type", "form": "shape",
    "role": "part", "work": "labour", "job": "post", "team": "side", "game": "match", "match": "game",
    "building": "structure", "structure": "building", "company": "firm", "firm": "company",
    "says": "states", "said": "stated", "claim": "assert", "claimed": "asserted", "believe": "think",
    "believed": "thought", "thought": "believed", "known": "recognised", "seen": "regarded",
    "became": "grew into", "become": "turn into", "remains": "stays", "remained": "stayed", "keep": "retain",
    "kept": "retained", "reach": "attain", "reached": "attained", "reaches": "attains", "allow": "permit",
    "allowed": "permitted", "allows": "permits", "need": "require", "needed": "required", "needs": "requires",
    "wrote": "penned", "written": "penned", "painted": "coloured", "covered": "coated", "joined": "met",
    "join": "meet", "crosses": "spans", "crossed": "spanned", "carry": "convey", "carried": "conveyed",
    "produce": "generate", "produced": "generated", "produces": "generates", "increase": "rise",
    "increased": "rose", "decrease": "drop", "decreased": "dropped", "important to": "vital to",
}
_SYN_PATTERN = re.compile(r"(?<![\w-])(" + "|".join(sorted(map(re.escape, _SYNONYMS), key=len, reverse=True)) + r")(?![\w-])")


def _entities(text: str) -> set[str]:
    """Numbers and capitalized words not at a sentence start: what a rewrite must keep."""
    found = set()
    for sentence in re.split(r"(?<=[.!?])\s+", text.strip()):
        words = re.findall(r"[\w'-]+", sentence)
        found.update(w.lower() for i, w in enumerate(words) if any(c.isdigit() for c in w) or (i > 0 and w[:1].isupper()))
    return found


def keeps_entities(original: str, rewrite: str, share: float = 0.6) -> bool:
    if len(rewrite.split()) < max(5, len(original.split()) // 3):
        return False
    wanted = _entities(original)
    kept = {w.lower() for w in re.findall(r"[\w'-]+", rewrite)} & wanted
    return not wanted or len(kept) >= share * len(wanted)


def light_rewrite(text: str) -> str:
    """Lower-case word swaps in one pass (no chains); capitalized names, numbers and terms untouched."""
    return _SYN_PATTERN.sub(lambda match: _SYNONYMS[match.group(0)], text)


# --- the LLM augmenter ----------------------------------------------------------------------------

_QA_INSTRUCTION = (
    "Read the passage and write three different questions that the passage answers. "
    "For each question give the short answer, copied from the passage, and a full-sentence answer. "
    "Reply with a JSON list only.\n\nPassage:\n"
)
_REWRITE_INSTRUCTION = (
    "Rewrite the passage below. Keep every name, place, number and technical term exactly as it is, "
    "but express the same facts in different words. Reply with the rewritten passage only.\n\nPassage:\n"
)
# One worked example (written for this project) shows a small model the format.
_EXAMPLE_PASSAGE = ("The Harrow Bridge crosses the river Lune at Kirkby. It was opened in 1889 by the engineer "
                    "Agnes Dunmore and is built of red sandstone.")
_EXAMPLE_QA = [
    {"question": "Which river does the Harrow Bridge cross?", "answer": "the river Lune",
     "full_answer": "The Harrow Bridge crosses the river Lune."},
    {"question": "In which year was the Harrow Bridge opened?", "answer": "1889",
     "full_answer": "The Harrow Bridge was opened in 1889."},
    {"question": "Who opened the Harrow Bridge?", "answer": "Agnes Dunmore",
     "full_answer": "The engineer Agnes Dunmore opened the Harrow Bridge."},
]


@dataclass
class LLMAugmenter:
    """Rewrites and QA pairs from the loaded model: greedy first, then seeded sampling retries."""

    loaded: "LoadedModel"
    attempts: int = 4
    min_qa: int = MIN_QA
    max_qa: int = MIN_QA
    seed: int = 0
    max_new_tokens: int = 256
    rewrite_fallbacks: int = 0
    """Passages whose LLM rewrites all lost names or numbers, so the light rewrite was used."""

    @property
    def name(self) -> str:
        return slug(self.loaded.model_id)

    def _generate(self, messages: list[dict[str, str]], attempt: int, cancel: threading.Event | None, stop: str | None = None) -> str:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        tokenizer, model = self.loaded.tokenizer, self.loaded.model
        if getattr(tokenizer, "chat_template", None):
            prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            prompt = "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in messages) + "Assistant:"
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        prompt_len = ids["input_ids"].shape[1]

        class _Stop(StoppingCriteria):
            """Stop on cancel, or once the reply has closed its JSON list."""

            def __call__(self, input_ids, scores, **kwargs) -> bool:  # type: ignore[override]
                if cancel is not None and cancel.is_set():
                    return True
                if stop is None:
                    return False
                tail = tokenizer.decode(input_ids[0, prompt_len:], skip_special_tokens=True)
                return stop in tail

        sample = attempt > 0
        options: dict[str, Any] = {"do_sample": sample, "max_new_tokens": self.max_new_tokens,
                                   "pad_token_id": tokenizer.pad_token_id, "stopping_criteria": StoppingCriteriaList([_Stop()])}
        if sample:  # the reference samples with temperature 0.7, top-k 50
            options.update(temperature=0.7, top_k=50)
        else:
            options.update(temperature=None, top_k=None, top_p=None)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 1000 + attempt)
            with torch.inference_mode():
                out = model.generate(**ids, **options)
        check_cancel(cancel)
        return tokenizer.decode(out[0, prompt_len:], skip_special_tokens=True).strip()

    def rewrite(self, passage: Passage, cancel: threading.Event | None = None) -> str:
        """An LLM rewrite that keeps the passage's names and numbers; the light rewrite when none does."""
        for attempt in range(2):
            text = self._generate([{"role": "user", "content": _REWRITE_INSTRUCTION + passage.text}], attempt, cancel)
            text = re.sub(r"^(?:here is |)(?:the |)rewritten passage:?\s*|^rewrite the passage:?\s*", "", text, flags=re.I).strip()
            if keeps_entities(passage.text, text):
                return text
        self.rewrite_fallbacks += 1
        return light_rewrite(passage.text)

    def qa_pairs(self, passage: Passage, cancel: threading.Event | None = None) -> tuple[list[QAPair], str]:
        """Up to `max_qa` validated pairs, gathered over several attempts; the reason when too few."""
        messages = [
            {"role": "user", "content": _QA_INSTRUCTION + _EXAMPLE_PASSAGE},
            {"role": "assistant", "content": json.dumps(_EXAMPLE_QA, indent=1)},
            {"role": "user", "content": _QA_INSTRUCTION + passage.text},
        ]
        kept: list[dict[str, Any]] = []
        reasons: list[str] = []
        valid: list[QAPair] = []
        for attempt in range(self.attempts):
            check_cancel(cancel)
            raw = parse_qa_output(self._generate(messages, attempt, cancel, stop="]"))
            if not raw:
                reasons.append("no QA pairs could be parsed")
            kept.extend(raw)
            valid, rejected = validate_pairs(kept, passage.text, [q["question"] for q in _EXAMPLE_QA])
            reasons.extend(rejected)
            if len(valid) >= self.max_qa:
                break
        if len(valid) >= self.min_qa:
            return valid[: self.max_qa], ""
        common = max(set(reasons), key=reasons.count) if reasons else "no output"
        return valid, f"{len(valid)} valid QA pairs after {self.attempts} attempts (need {self.min_qa}); most common problem: {common}"


# --- the stage ------------------------------------------------------------------------------------


AugmentFn = Callable[[Passage, threading.Event | None], "AugmentRecord | FailedPassage"]
"""Augments one passage: a record, or a failure with its reason."""


def llm_source(augmenter: LLMAugmenter, rewrite: str = "llm") -> AugmentFn:
    def run(passage: Passage, cancel: threading.Event | None) -> AugmentRecord | FailedPassage:
        pairs, reason = augmenter.qa_pairs(passage, cancel)
        if reason:
            return FailedPassage(passage, reason)
        text = augmenter.rewrite(passage, cancel) if rewrite == "llm" else light_rewrite(passage.text)
        return AugmentRecord(passage, text, pairs)

    return run


def gold_source(index: dict[str, list["QAItem"]], min_qa: int = MIN_QA, max_qa: int = MIN_QA,
                augmenter: LLMAugmenter | None = None) -> AugmentFn:
    """QA pairs from the data; the rewrite from `augmenter` when given, else the light rewrite."""

    def run(passage: Passage, cancel: threading.Event | None) -> AugmentRecord | FailedPassage:
        questions = index.get(_SPACES.sub(" ", passage.text.strip()), [])
        pairs = gold_pairs(passage, questions)
        if len(pairs) < min_qa:
            return FailedPassage(passage, f"the data has {len(pairs)} question(s) for this passage (need {min_qa})")
        text = augmenter.rewrite(passage, cancel) if augmenter is not None else light_rewrite(passage.text)
        return AugmentRecord(passage, text, pairs[:max_qa])

    return run


@dataclass
class AugmentSummary:
    path: Path
    total: int
    skipped: int = 0
    """Already in the file (or recorded as failed) before this run."""
    augmented: int = 0
    failed: int = 0
    seconds: float = 0.0


def augment_passages(
    passages: Sequence[Passage],
    out: Path,
    aug_model: str,
    source: AugmentFn,
    info: dict[str, Any] | None = None,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    retry_failed: bool = False,
    flush_every_s: float = 2.0,
    layout: str | None = None,
) -> AugmentSummary:
    """Augment what `out` does not hold yet; the file is rewritten atomically as work finishes.

    `layout` None keeps an existing file's layout (new files: "items").
    """
    out = Path(out).expanduser()
    aug = load_augment(out) if out.is_file() else AugmentFile(aug_model)
    relayout = layout is not None and layout != aug.layout
    if layout is not None:
        aug.layout = layout
    if out.is_file() and aug.records and aug.aug_model != aug_model:
        raise InputError(f"{out} holds \"{aug.aug_model}\" augmentations, this run writes \"{aug_model}\"",
                         "use another --out file or the same source as before")
    aug.aug_model = aug_model
    aug.info = {**aug.info, **(info or {})}
    done = aug.done_keys()
    if retry_failed:
        aug.failed = [f for f in aug.failed if f.passage.key not in {p.key for p in passages}]
    failed = aug.failed_keys()
    todo = [p for p in passages if p.key not in done and p.key not in failed]
    summary = AugmentSummary(out, len(passages), skipped=len(passages) - len(todo))
    label = "Augmenting passages"
    report(progress, label, summary.skipped, len(passages))
    start = last_flush = time.perf_counter()
    dirty = not out.is_file() or relayout
    try:
        for passage in todo:
            check_cancel(cancel)
            result = source(passage, cancel)
            if isinstance(result, FailedPassage):
                aug.failed.append(result)
                summary.failed += 1
            else:
                aug.records.append(result)
                summary.augmented += 1
            dirty = True
            if time.perf_counter() - last_flush >= flush_every_s:
                save_augment(out, aug)
                dirty, last_flush = False, time.perf_counter()
            finished = summary.skipped + summary.augmented + summary.failed
            report(progress, label, finished, len(passages), f"{summary.failed} failed" if summary.failed else "")
    except (Cancelled, KeyboardInterrupt):
        if dirty:
            save_augment(out, aug)
        raise
    if dirty:
        save_augment(out, aug)
    summary.seconds = time.perf_counter() - start
    return summary
