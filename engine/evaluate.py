"""Dataset evaluation: every selected method on every question, resumable, scored like the papers.

Why it is built this way:

- One `Explorer.compare` call per question runs all selected methods in one
  batched generation, so a six-method table costs about one pass per question.
- Predictions go to one JSONL file per (data file, settings, method), one line
  per question, appended, flushed and fsynced as soon as the question is done.
  A killed run (Ctrl-C or SIGKILL) loses at most the question in flight; the next
  run reads the files, drops a torn last line, and skips what is finished.
- The file name carries every setting that changes an answer (model, top-k,
  max-new-tokens, given passages or a corpus, translator, PRAG LoRA recipe), so
  runs with different settings never mix. `<prefix>.settings.json` spells the
  fingerprint out; `<prefix>.results.json` keeps the last table.
- A stored answer that failed (e.g. no PRAG LoRA yet) is not final: the next run
  asks again, so `prag encode` then `prag eval` fills the PRAG rows in.
- Scores are recomputed from the stored predictions against the data file's
  answers at the end, so the table never depends on how a run was split.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Iterator, Sequence

from engine.atomic import clean_temp_files, file_lock, write_text
from engine.config import Settings, load_settings
from engine.errors import Cancelled, InputError
from engine.methods import METHODS, AdapterSource, Method
from engine.metrics import contains_any, exact_match, f1_score
from engine.progress import ProgressCallback, report
from engine.qa import QAItem, load_qa
from engine.retrieval import BM25Retriever, Hit, hits_from_passages

if TYPE_CHECKING:
    from engine.explorer import AnswerUpdate, Explorer

REFERENCE_MAX_NEW_TOKENS = 20
"""The reference's generation budget for direct answers."""
REFERENCE_TOP_K = 3

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class EvalOptions:
    """What to evaluate and how; `Settings` says which model, translator and LoRA store."""

    data: Path
    """QA file in the shared JSONL format."""
    methods: tuple[Method, ...] = tuple(METHODS.values())
    limit: int | None = None
    """Evaluate only the first N questions of the file (after `offset`); None = all."""
    offset: int = 0
    """Skip this many questions first: a dev split of the same file (`--offset 200 --limit 100`)."""
    top_k: int = REFERENCE_TOP_K
    max_new_tokens: int = REFERENCE_MAX_NEW_TOKENS
    corpus: Path | None = None
    """Retrieve from this corpus instead of the passages given in the file."""
    index: Path | None = None
    """Retrieve from this index folder (`prag corpus index`) instead of the passages given in the file."""
    out_dir: Path | None = None
    """Where prediction files go; None = `<PRAG_HOME>/eval`."""
    encode_missing: bool = False
    """Encode missing PRAG LoRAs on demand (slow) instead of reporting an error."""
    rerank: str = "none"
    """Passage selection: "none" (BM25 top-k) or "dynamic" (the LLM reranker picks order and count)."""
    candidates: int = 10
    """BM25 candidates the dynamic reranker chooses from."""


@dataclass
class MethodScores:
    """One row of the results table; means over the evaluated questions."""

    method: str
    label: str
    n: int = 0
    """Questions with a stored prediction for this method."""
    em: float = 0.0
    f1: float = 0.0
    precision: float = 0.0
    recall: float = 0.0
    latency_s: float | None = None
    """Mean seconds per answer, over answers without an error; None when all failed."""
    tokens: float | None = None
    """Mean new tokens per answer, over answers without an error."""
    errors: int = 0
    """Answers that failed; each scores as an empty prediction (EM and F1 0)."""
    first_error: str | None = None
    """The first failure's message, to tell the user what to do."""
    conflict_n: int = 0
    """Questions with a `conflict` field among the evaluated ones."""
    context_rate: float | None = None
    """Share of conflict answers containing the passage's (substituted) answer."""
    memory_rate: float | None = None
    """Share of conflict answers containing the original (memory) answer."""
    passages: float | None = None
    """Mean number of passages the method was given (varies under dynamic reranking)."""

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "em": _round(self.em), "f1": _round(self.f1), "precision": _round(self.precision), "recall": _round(self.recall),
            "latency_s": _round(self.latency_s), "tokens": _round(self.tokens), "errors": self.errors,
            "passages": _round(self.passages),
        }
        if self.conflict_n:
            row["context_rate"] = _round(self.context_rate)
            row["memory_rate"] = _round(self.memory_rate)
        return row


@dataclass
class EvalResult:
    """The table of one evaluation run, plus where its predictions live."""

    data: Path
    n: int
    """Questions evaluated (after --limit)."""
    methods: dict[str, MethodScores]
    predictions: dict[str, Path]
    """Method name -> its predictions file."""
    model: str = ""
    top_k: int = REFERENCE_TOP_K
    max_new_tokens: int = REFERENCE_MAX_NEW_TOKENS
    computed: int = 0
    """Questions this run sent to the model (for all their methods, or only the missing ones)."""
    resumed: int = 0
    """(question, method) answers taken from the prediction files instead of asked again."""
    repaired: int = 0
    """Lines dropped from the prediction files on load (torn, invalid, or failed answers to retry)."""
    wall_s: float = 0.0
    seconds_per_question: float | None = None
    """Mean wall time of one compare call (all methods of one question) in this run."""

    @property
    def has_conflicts(self) -> bool:
        return any(s.conflict_n for s in self.methods.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "data": str(self.data),
            "n": self.n,
            "methods": {name: scores.to_json() for name, scores in self.methods.items()},
            "predictions": str(next(iter(self.predictions.values())).parent) if self.predictions else None,
        }

    def table(self) -> tuple[list[str], list[list[str]]]:
        """Headers and formatted rows, for any renderer (rich in the CLI, a DataTable in the TUI)."""
        headers = ["Method", "EM", "F1", "Precision", "Recall", "Latency", "Tokens", "Passages", "Errors"]
        if self.has_conflicts:
            headers += ["Context", "Memory"]
        rows = []
        for s in self.methods.values():
            row = [s.label, f"{s.em:.3f}", f"{s.f1:.3f}", f"{s.precision:.3f}", f"{s.recall:.3f}",
                   "-" if s.latency_s is None else f"{s.latency_s:.2f}s", "-" if s.tokens is None else f"{s.tokens:.1f}",
                   "-" if s.passages is None else f"{s.passages:.2f}", str(s.errors)]
            if self.has_conflicts:
                row += ["-" if s.context_rate is None else f"{s.context_rate:.3f}", "-" if s.memory_rate is None else f"{s.memory_rate:.3f}"]
            rows.append(row)
        return headers, rows


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


# --- scoring ---------------------------------------------------------------------------


def score_record(prediction: str, error: str | None, answers: Sequence[str]) -> tuple[float, float]:
    """(EM, F1) of one stored answer; a failed answer is an empty prediction."""
    text = "" if error else prediction
    return exact_match(text, answers), f1_score(text, answers).f1


def summarize(items: Sequence[QAItem], methods: Sequence[Method], records: dict[str, dict[str, dict[str, Any]]]) -> dict[str, MethodScores]:
    """Per-method means over the items that have a record; `records[method][id]` is one prediction line."""
    table: dict[str, MethodScores] = {}
    for method in methods:
        scores = MethodScores(method.name, method.label)
        sums = {"em": 0.0, "f1": 0.0, "precision": 0.0, "recall": 0.0}
        latency: list[float] = []
        tokens: list[int] = []
        kept: list[int] = []
        context = memory = 0
        for item in items:
            record = records.get(method.name, {}).get(item.id)
            if record is None:
                continue
            scores.n += 1
            if isinstance(record.get("passages"), list):
                kept.append(len(record["passages"]))
            error = record.get("error")
            prediction = "" if error else str(record.get("prediction") or "")
            if error:
                scores.errors += 1
                scores.first_error = scores.first_error or str(error)
            else:
                latency.append(float(record.get("latency_s") or 0.0))
                tokens.append(int(record.get("tokens") or 0))
            overlap = f1_score(prediction, item.answers)
            sums["em"] += exact_match(prediction, item.answers)
            sums["f1"] += overlap.f1
            sums["precision"] += overlap.precision
            sums["recall"] += overlap.recall
            if item.conflict is not None:
                scores.conflict_n += 1
                context += contains_any(prediction, item.conflict.substituted_answers)
                memory += contains_any(prediction, item.conflict.original_answers)
        if scores.n:
            scores.em, scores.f1 = sums["em"] / scores.n, sums["f1"] / scores.n
            scores.precision, scores.recall = sums["precision"] / scores.n, sums["recall"] / scores.n
        if latency:
            scores.latency_s = sum(latency) / len(latency)
            scores.tokens = sum(tokens) / len(tokens)
        if kept:
            scores.passages = sum(kept) / len(kept)
        if scores.conflict_n:
            scores.context_rate = context / scores.conflict_n
            scores.memory_rate = memory / scores.conflict_n
        table[method.name] = scores
    return table


# --- prediction files ------------------------------------------------------------------


def _valid_record(row: Any, method: str) -> bool:
    return (
        isinstance(row, dict)
        and isinstance(row.get("id"), str)
        and row.get("method") == method
        and isinstance(row.get("prediction"), str)
        and (row.get("error") is None or isinstance(row.get("error"), str))
    )


class PredictionFile:
    """One method's predictions: JSONL, one line per question, append-only while a run lasts."""

    def __init__(self, path: Path, method: str) -> None:
        self.path = path
        self.method = method
        self.records: dict[str, dict[str, Any]] = {}
        """Question id -> its line in the file (after `load`, only error-free ones: failed answers are asked again)."""
        self._fh: IO[str] | None = None

    def load(self) -> int:
        """Read finished records; rewrite the file without torn, invalid or failed lines. Returns lines dropped."""
        if not self.path.is_file():
            return 0
        raw = self.path.read_bytes()
        lines = raw.split(b"\n")
        # Everything after the last newline is a line a killed writer did not finish.
        dropped = 1 if lines[-1].strip() else 0
        for line in lines[:-1]:
            if not line.strip():
                continue
            try:
                row = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                dropped += 1
                continue
            if not _valid_record(row, self.method) or row.get("error") is not None:
                dropped += 1
                continue
            if row["id"] in self.records:
                dropped += 1
            self.records[row["id"]] = row
        if dropped:
            write_text(self.path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.records.values()))
        return dropped

    def append(self, record: dict[str, Any]) -> None:
        """Write one line and push it to disk before the next question starts."""
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.records[record["id"]] = record

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


@contextmanager
def _exclusive(lock_path: Path, what: str) -> Iterator[None]:
    """Refuse a second run writing the same prediction files."""
    held = ExitStack()
    try:
        held.enter_context(file_lock(lock_path, wait=False))
    except BlockingIOError:
        raise InputError(f"another `prag eval` is writing {what}", "wait for it to finish, or pass a different --out") from None
    with held:
        yield


# --- settings fingerprint --------------------------------------------------------------


def _segment(text: str, limit: int = 48) -> str:
    safe = _UNSAFE.sub("_", text).strip("._") or "x"
    if len(safe) > limit:
        safe = f"{safe[: limit - 9]}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"
    return safe


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def fingerprint(explorer: "Explorer", options: EvalOptions, translator_path: Path | None) -> dict[str, Any]:
    """Every setting that changes an answer, as plain data (hashed into the file names)."""
    corpus: dict[str, Any] | None = None
    if options.index is not None:  # the index manifest's digest: sorted passage keys, as below
        corpus = {"path": str(options.index), "passages": len(explorer.retriever),
                  "digest": getattr(explorer.retriever, "digest", str(options.index))}
    elif options.corpus is not None:
        passages = getattr(explorer.retriever, "passages", None)
        keys = sorted(p.key for p in passages) if passages else [str(options.corpus)]
        corpus = {"path": str(options.corpus), "passages": len(keys),
                  "digest": hashlib.sha256("\n".join(keys).encode()).hexdigest()[:12]}
    translator: dict[str, Any] | None = None
    if explorer.translator is not None:
        if translator_path is not None and Path(translator_path).is_file():
            translator = {"path": str(translator_path), "digest": _file_digest(Path(translator_path))}
        else:  # opened by the caller from somewhere we cannot see: hash its weights instead
            digest = hashlib.sha256()
            for name, tensor in sorted(explorer.translator.state_dict().items()):
                digest.update(name.encode())
                digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
            translator = {"path": None, "digest": digest.hexdigest()[:12]}
    return {
        "model": explorer.loaded.model_id,
        "top_k": options.top_k,
        "max_new_tokens": options.max_new_tokens,
        "corpus": corpus,
        "translator": translator,
        "prag_lora": explorer.store.config.key(),
        **({"rerank": {"mode": options.rerank, "candidates": options.candidates}} if options.rerank != "none" else {}),
    }


def methods_fingerprint(fp: dict[str, Any], methods: Sequence[Method]) -> dict[str, Any]:
    """Only the settings these methods read: a new translator leaves the vanilla, RAG and PRAG predictions valid."""
    sources = {m.adapter for m in methods}
    return {**fp, "translator": fp["translator"] if AdapterSource.DYPRAG in sources else None,
            "prag_lora": fp["prag_lora"] if AdapterSource.PRAG in sources else None}


def prediction_path(out_dir: Path, data: Path, fp: dict[str, Any], method: Method) -> Path:
    return out_dir / f"{file_prefix(data, methods_fingerprint(fp, [method]))}__{method.name}.jsonl"


@contextmanager
def open_predictions(out_dir: Path, data: Path, fp: dict[str, Any], methods: Sequence[Method]
                     ) -> Iterator[tuple[str, dict[str, PredictionFile], int]]:
    """Lock, clean and load every method's prediction file; yields (run prefix, files, lines repaired).

    One lock per prediction file: runs that share no file (another translator, another
    method) may run side by side; two that would append to the same file cannot.
    """
    fp = methods_fingerprint(fp, methods)  # the run's settings and results files, too, name only what it reads
    # The method names keep runs of other methods (which may share every setting) off these two files.
    prefix = file_prefix(data, {**fp, "methods": [m.name for m in methods]})
    files = {m.name: PredictionFile(prediction_path(out_dir, data, fp, m), m.name) for m in methods}
    with ExitStack() as stack:
        for f in sorted(files.values(), key=lambda f: f.path.name):
            stack.enter_context(_exclusive(f.path.with_name(f".{f.path.stem}.lock"), str(f.path)))
        # Temp files of a run killed mid-write (a repaired predictions file; settings and results
        # below): only those of our own files, which no other run can be writing while we hold the locks.
        clean_temp_files(out_dir, [f"{prefix}.settings.json", f"{prefix}.results.json", *(f.path.name for f in files.values())])
        write_text(out_dir / f"{prefix}.settings.json", json.dumps({"data": str(data), **fp}, indent=2) + "\n")
        repaired = sum(f.load() for f in files.values())
        try:
            yield prefix, files, repaired
        finally:
            for f in files.values():
                f.close()


def file_prefix(data: Path, fp: dict[str, Any]) -> str:
    """`<data stem>__<model>__k<k>__n<new tokens>__<given|corpus-NAME>__<tr-none|tr-NAME>__<hash>`."""
    corpus = "given" if fp["corpus"] is None else f"corpus-{_segment(Path(fp['corpus']['path']).stem, 24)}"
    tr = fp["translator"]
    translator = "tr-none" if tr is None else f"tr-{_segment(Path(tr['path']).stem, 24) if tr['path'] else 'loaded'}"
    # Hash contents, not paths: the same corpus or translator reached by another path resumes the same files.
    content = {**fp, "corpus": fp["corpus"] and fp["corpus"]["digest"], "translator": tr and tr["digest"]}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:8]
    return "__".join([_segment(data.stem), _segment(fp["model"]), f"k{fp['top_k']}", f"n{fp['max_new_tokens']}", corpus, translator, digest])


# --- the run ---------------------------------------------------------------------------


def answer_one(
    explorer: "Explorer", item: QAItem, options: EvalOptions, files: dict[str, PredictionFile],
    progress: ProgressCallback | None, label: str, done: int, total: int, cancel: threading.Event | None,
) -> float | None:
    """All methods still missing for `item`, in one compare call; their lines appended. None when cancelled."""
    methods = [m for m in options.methods if item.id not in files[m.name].records]
    hits = hits_for(item, explorer, options)
    rerank_note = None
    if options.rerank == "dynamic":
        pool = hits_for(item, explorer, replace(options, top_k=max(options.candidates, options.top_k)))
        hits, reranked = explorer.rerank_hits(item.question, pool, options.top_k, cancel)
        rerank_note = reranked.to_json()

    def on_update(update: "AnswerUpdate") -> None:
        if update.answer.status == "encoding" and update.answer.detail:
            report(progress, label, done, total, update.answer.detail)

    start = time.perf_counter()
    comparison = explorer.compare(item.question, hits, methods, options.max_new_tokens, on_update, cancel, options.encode_missing)
    wall = time.perf_counter() - start
    for answer in comparison.answers:
        if answer.status == "cancelled":
            continue  # half an answer is no answer: ask again next run
        em, f1 = score_record(answer.text, answer.error, item.answers)
        files[answer.method].append({
            "id": item.id, "method": answer.method, "prediction": answer.text, "answers": list(item.answers),
            "em": em, "f1": round(f1, 4), "latency_s": round(answer.latency_s, 4), "tokens": answer.tokens, "error": answer.error,
            "passages": [h.passage.id for h in hits], **({"rerank": rerank_note} if rerank_note else {}),
        })
    if any(a.status == "cancelled" for a in comparison.answers):
        return None
    return wall


def _check_options(options: EvalOptions) -> None:
    if options.limit is not None and options.limit < 1:
        raise InputError(f"limit must be at least 1, got {options.limit}", "pass --limit 1 or more, or leave it out for all")
    if options.offset < 0:
        raise InputError(f"offset cannot be negative, got {options.offset}", "pass --offset 0 or more")
    if options.top_k < 1:
        raise InputError(f"top-k must be at least 1, got {options.top_k}", "pass --top-k 1 or more")
    if options.max_new_tokens < 1:
        raise InputError(f"max-new-tokens must be at least 1, got {options.max_new_tokens}", "pass a positive number")
    if not options.methods:
        raise InputError("no method selected", f"choose from {', '.join(METHODS)} or 'all'")
    from engine.rerank import check_mode

    check_mode(options.rerank)
    if options.candidates < 1:
        raise InputError(f"--candidates must be at least 1, got {options.candidates}", "pass 1 or more")


def load_items(options: EvalOptions) -> list[QAItem]:
    """The questions to run, checked up front so bad data fails before the model loads."""
    from engine.explorer import validate_question

    items = load_qa(options.data, None if options.limit is None else options.offset + options.limit)[options.offset:]
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
            raise InputError(f"{options.data}: question {item.id} has no passages", "give every line passages, or pass --corpus to retrieve")
    return items


def hits_for(item: QAItem, explorer: "Explorer", options: EvalOptions) -> list[Hit]:
    """The passages a question is answered with: from the corpus, or the file's own (BM25 top-k when more than k)."""
    if options.corpus is not None or options.index is not None:
        return explorer.retrieve(item.question, options.top_k)
    if len(item.passages) <= options.top_k:
        return hits_from_passages(item.passages, item.question)
    hits = BM25Retriever(item.passages).search(item.question, options.top_k)
    if len(hits) < options.top_k:
        # BM25 leaves out passages sharing no term with the question; a row's own passages still fill
        # the k slots (in file order), so every method sees k passages as the reference does.
        chosen = {hit.passage for hit in hits}
        rest = [p for p in item.passages if p not in chosen][: options.top_k - len(hits)]
        hits += [replace(hit, rank=len(hits) + i) for i, hit in enumerate(hits_from_passages(rest, item.question), start=1)]
    return hits


def open_explorer(settings: Settings, options: EvalOptions, items: Sequence[QAItem], progress: ProgressCallback | None) -> "Explorer":
    from engine.explorer import Explorer

    if options.corpus is not None or options.index is not None:
        return Explorer.open(replace(settings, corpus=options.corpus, index=options.index), progress)
    # Answers come from each row's own passages; the explorer's index is unused, so keep it to those.
    pooled = list({p.id: p for item in items for p in item.passages}.values())
    return Explorer.open(settings, progress, passages=pooled)


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
    explorer: "Explorer | None" = None,
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
        resumed = sum(item.id in f.records for item in items for f in files.values())
        pending = [item for item in items if any(item.id not in f.records for f in files.values())]
        done = len(items) - len(pending)
        report(progress, label, done, len(items))
        for item in pending:
            if cancel is not None and cancel.is_set():
                break
            wall = answer_one(explorer, item, options, files, progress, label, done, len(items), cancel)
            if wall is None:
                break
            walls.append(wall)
            computed += 1
            done += 1
            report(progress, label, done, len(items), f"{sum(walls) / len(walls):.1f} s/question")
        records = {name: f.records for name, f in files.items()}
        result = EvalResult(
            data=Path(options.data), n=len(items), methods=summarize(items, options.methods, records),
            predictions={name: f.path for name, f in files.items()}, model=explorer.loaded.model_id,
            top_k=options.top_k, max_new_tokens=options.max_new_tokens, computed=computed, resumed=resumed, repaired=repaired,
            wall_s=time.perf_counter() - started, seconds_per_question=sum(walls) / len(walls) if walls else None,
        )
        write_text(out_dir / f"{prefix}.results.json", json.dumps(result.to_json(), indent=2) + "\n")
    if cancel is not None and cancel.is_set():
        raise Cancelled(f"evaluation stopped after {done} of {len(items)} questions", "run the same command again to resume")
    return result
