"""The run: every pending question through `Explorer.ask`, its answers appended to the prediction files."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from engine.answers import AnswerUpdate
from engine.atomic import write_text
from engine.config import Settings, load_settings
from engine.errors import Cancelled, InputError
from engine.evaluate.options import EvalOptions
from engine.evaluate.paired import question_groups
from engine.evaluate.predictions import PredictionFile, fingerprint, open_predictions
from engine.evaluate.record import reuse_record
from engine.evaluate.results import EvalResult, score_record, summarize
from engine.methods import METHODS
from engine.probes import ProbeSet
from engine.progress import ProgressCallback, report
from engine.qa import QAItem, load_qa
from engine.retrieval import BM25Retriever, Hit, hits_from_passages
from engine.validate import not_negative, positive, positive_or_none

if TYPE_CHECKING:
    from engine.explorer import Explorer


def answer_one(
    explorer: Explorer, item: QAItem, options: EvalOptions, files: dict[str, PredictionFile],
    progress: ProgressCallback | None, label: str, done: int, total: int, cancel: threading.Event | None,
) -> float | None:
    """All methods still missing for `item`, in one compare call; their lines appended. None when cancelled."""
    return answer_batch(explorer, [item], options, files, progress, label, done, total, cancel)


def _request(explorer: Explorer, item: QAItem, options: EvalOptions, files: dict[str, PredictionFile]):
    """The question as the explorer is asked it (only its missing methods), and its probes."""
    from engine.explorer import AskRequest

    methods = tuple(m for m in options.methods if item.id not in files[m.name].records)
    dynamic = options.rerank == "dynamic"
    given = hits_for(item, explorer, replace(options, top_k=max(options.candidates, options.top_k)) if dynamic else options)
    probes = ProbeSet.for_item(item)
    request = AskRequest(item.question, methods, options.top_k, options.max_new_tokens, options.rerank, options.candidates,
                         options.encode_missing, hits=None if dynamic else tuple(given), pool=tuple(given) if dynamic else None,
                         scores=probes.candidates() if options.probes else (), layers=options.layers, merge=options.merge,
                         order=options.order, lora_span=options.lora_span)
    return request, probes


def answer_batch(
    explorer: Explorer, items: Sequence[QAItem], options: EvalOptions, files: dict[str, PredictionFile],
    progress: ProgressCallback | None, label: str, done: int, total: int, cancel: threading.Event | None,
) -> float | None:
    """Several questions' missing methods in one batched pass (`Explorer.ask_batch`); their lines appended.

    Returns the wall seconds per question, or None when cancelled (finished questions are kept).
    """
    asked = [_request(explorer, item, options, files) for item in items]

    def on_event(event: object) -> None:
        if isinstance(event, AnswerUpdate) and event.answer.status == "encoding" and event.answer.progress is not None:
            p = event.answer.progress
            report(progress, label, done, total, f"encoding PRAG LoRA {p.done}/{p.total}")

    start = time.perf_counter()
    comparisons = explorer.ask_batch([request for request, _ in asked], [on_event] * len(asked), cancel)
    wall = (time.perf_counter() - start) / len(items)
    cancelled = False
    for item, (_, probes), comparison in zip(items, asked, comparisons, strict=True):
        rerank_note = comparison.extra.get("rerank")
        for answer in comparison.answers:
            if answer.status == "cancelled":
                cancelled = True
                continue  # half an answer is no answer: ask again next run
            em, f1 = score_record(answer.text, answer.error, item.answers)
            files[answer.method].append({
                "id": item.id, "method": answer.method, "prediction": answer.text, "answers": list(item.answers),
                "em": em, "f1": round(f1, 4), "latency_s": round(answer.latency_s, 4), "tokens": answer.tokens,
                "error": answer.error, "passages": [h.passage.id for h in comparison.hits],
                **({"rerank": rerank_note} if rerank_note else {}),
                **({"probes": {k: round(v, 4) for k, v in probes.measure(answer).items()}} if answer.scores else {}),
            })
    return None if cancelled else wall


def _check_options(options: EvalOptions) -> None:
    positive_or_none(options.limit, "limit", "use 1 or more, or None for every question")
    not_negative(options.offset, "offset")
    positive(options.top_k, "top-k")
    positive(options.max_new_tokens, "max-new-tokens")
    if not options.methods:
        raise InputError("no method selected", f"choose from {', '.join(METHODS)} or 'all'")
    from engine.rerank import check_mode

    check_mode(options.rerank)
    positive(options.candidates, "candidates")
    positive(options.batch_questions, "questions per batch")


def load_items(options: EvalOptions) -> list[QAItem]:
    """The questions to run, checked up front so bad data fails before the model loads."""
    from engine.explorer import validate_question

    if options.group is None:
        items = load_qa(options.data, None if options.limit is None else options.offset + options.limit)[options.offset:]
    else:
        items = [item for item in load_qa(options.data) if item.meta.get("group") == options.group]
        if not items:
            raise InputError(f"{options.data} has no question whose meta.group is {options.group!r}", "check the group name")
        items = items[options.offset:][: options.limit]
    if not items:
        raise InputError(f"{options.data} has no questions after the first {options.offset}", "pass a smaller --offset")
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise InputError(f"{options.data}: id {item.id!r} appears twice", "ids must be unique: predictions are resumed by id")
        seen.add(item.id)
        try:
            validate_question(item.question)
        except InputError as exc:
            raise InputError(f"{options.data}: question {item.id}: {exc.message}", "fix that line of the QA file") from None
        if options.corpus is None and options.index is None and not item.passages:
            raise InputError(f"{options.data}: question {item.id} has no passages",
                             "give every line passages, or pass --corpus to retrieve")
    return items


def hits_for(item: QAItem, explorer: Explorer, options: EvalOptions) -> list[Hit]:
    """The passages a question is answered with: from the corpus, or the file's own (BM25 top-k when more than k)."""
    if options.corpus is not None or options.index is not None:
        return explorer.retrieve(item.question, options.top_k)
    if len(item.passages) <= options.top_k:
        # Scored against the pooled index of every row's passages: what `--merge weighted` weighs by.
        scorer = getattr(getattr(explorer, "retriever", None), "score_passages", None)
        return hits_from_passages(item.passages, item.question, scorer(item.question, item.passages) if scorer else None)
    hits = BM25Retriever(item.passages).search(item.question, options.top_k)
    if len(hits) < options.top_k:
        # BM25 leaves out passages sharing no term with the question; a row's own passages still fill
        # the k slots (in file order), so every method sees k passages as the reference does.
        chosen = {hit.passage for hit in hits}
        rest = [p for p in item.passages if p not in chosen][: options.top_k - len(hits)]
        hits += [replace(hit, rank=len(hits) + i) for i, hit in enumerate(hits_from_passages(rest, item.question), start=1)]
    return hits


def open_explorer(settings: Settings, options: EvalOptions, items: Sequence[QAItem], progress: ProgressCallback | None) -> Explorer:
    """The session for a run: retrieval from the corpus/index, or a small index of the rows' own passages."""
    from engine.session import open_explorer as open_session

    if options.corpus is not None or options.index is not None:
        return open_session(replace(settings, corpus=options.corpus, index=options.index), progress,
                            reranker_model=options.reranker_model)
    # Answers come from each row's own passages; the explorer's index is unused, so keep it to those.
    pooled = list({p.id: p for item in items for p in item.passages}.values())
    return open_session(settings, progress, passages=pooled, reranker_model=options.reranker_model)


def prepare_run(options: EvalOptions, settings: Settings | None) -> tuple[Settings, list[QAItem], Path]:
    """Checks before any model loads: options, the QA file, a writable predictions folder."""
    _check_options(options)
    settings = settings or load_settings()
    items = load_items(options)
    out_dir = Path(options.out_dir if options.out_dir is not None else settings.home / "eval").expanduser()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the predictions folder {out_dir}: {exc.strerror}", "pass --out with a writable folder") from None
    return settings, items, out_dir


def evaluate(
    options: EvalOptions,
    settings: Settings | None = None,
    *,
    explorer: Explorer | None = None,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> EvalResult:
    """Run (or resume) an evaluation and return its table.

    Args:
        options: data file, methods and generation settings.
        settings: model, translator and store; None = the resolved defaults.
        explorer: an already open explorer (tests, the TUI); None = open one from `settings`.
        progress: receives model loading and "Evaluating <stem>" events (done/total questions).
        cancel: set it to stop after the question in flight; finished questions stay saved.
    """
    from engine.explorer import default_translator_path

    started = time.perf_counter()
    settings, items, out_dir = prepare_run(options, settings)
    if explorer is None:
        explorer = open_explorer(settings, options, items, progress)
    translator_path = settings.translator or default_translator_path(explorer.loaded.model_id)
    fp = fingerprint(explorer, options, translator_path)
    label = f"Evaluating {Path(options.data).stem}"
    computed = 0
    walls: list[float] = []
    with open_predictions(out_dir, Path(options.data), fp, options.methods) as (prefix, files, repaired):
        reused = reuse_record(options.reuse, Path(options.data), fp, files, items) if options.reuse is not None else 0
        resumed = sum(item.id in f.records for item in items for f in files.values())
        pending = [item for item in items if any(item.id not in f.records for f in files.values())]
        done = len(items) - len(pending)
        report(progress, label, done, len(items))
        size = options.batch_questions
        for first in range(0, len(pending), size):
            if cancel is not None and cancel.is_set():
                break
            batch = pending[first:first + size]
            wall = answer_batch(explorer, batch, options, files, progress, label, done, len(items), cancel)
            if wall is None:
                break
            walls += [wall] * len(batch)
            computed += len(batch)
            done += len(batch)
            report(progress, label, done, len(items), f"{sum(walls) / len(walls):.1f} s/question")
        records = {name: f.records for name, f in files.items()}
        result = EvalResult(
            data=Path(options.data), n=len(items), methods=summarize(items, options.methods, records),
            predictions={name: f.path for name, f in files.items()}, model=explorer.loaded.model_id,
            top_k=options.top_k, max_new_tokens=options.max_new_tokens, computed=computed, resumed=resumed - reused, reused=reused,
            repaired=repaired,
            wall_s=time.perf_counter() - started, seconds_per_question=sum(walls) / len(walls) if walls else None,
            placement=explorer.loaded.placement.label(), settings=fp,
            groups=question_groups(items),
        )
        write_text(out_dir / f"{prefix}.results.json", json.dumps(result.to_json(), indent=2) + "\n")
    if cancel is not None and cancel.is_set():
        raise Cancelled(f"evaluation stopped after {done} of {len(items)} questions", "run the same command again to resume")
    return result
