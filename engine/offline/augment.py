"""PRAG stage 1: one rewrite and a few QA pairs per passage, in the reference file layout.

The layout and its status sidecar are `engine.offline.records`. Two sources of QA pairs:
- the loaded LLM, prompted with the intent of the reference prompts (a JSON list of
  three QA pairs, a rewrite that keeps names and terms); its output is parsed
  leniently, validated against the passage and retried with sampling (this module);
- gold QA pairs from a QA JSONL file (`engine.offline.sources`, with the light rewrite
  and the choice of passages).
The stage augments what the file does not hold yet and rewrites it atomically as it goes,
so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.corpus import Passage
from engine.errors import Cancelled, InputError
from engine.offline.records import MIN_QA, AugmentFile, AugmentFn, AugmentRecord, FailedPassage, QAPair, load_augment, save_augment, slug
from engine.offline.sources import light_rewrite, norm_words, sentence_with
from engine.progress import ProgressCallback, check_cancel, report

if TYPE_CHECKING:
    from engine.models import LoadedModel


# --- validation -------------------------------------------------------------------------------


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


def validate_pairs(raw: Iterable[dict[str, Any]], passage: str, exclude: Iterable[str] = ()) -> tuple[list[QAPair], list[str]]:
    """Keep QA pairs a small model got right: grounded answer, real question, no duplicates.

    Returns (valid pairs, reasons for the rejected ones).
    """
    passage_norm = f" {norm_words(passage)} "
    banned = {norm_words(q) for q in exclude}
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
        q_norm, a_norm = norm_words(question), norm_words(answer)
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
            if not full or a_norm not in norm_words(full):
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

    loaded: LoadedModel
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


def llm_source(augmenter: LLMAugmenter, rewrite: str = "llm") -> AugmentFn:
    def run(passage: Passage, cancel: threading.Event | None) -> AugmentRecord | FailedPassage:
        pairs, reason = augmenter.qa_pairs(passage, cancel)
        if reason:
            return FailedPassage(passage, reason)
        text = augmenter.rewrite(passage, cancel) if rewrite == "llm" else light_rewrite(passage.text)
        return AugmentRecord(passage, text, pairs)

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
