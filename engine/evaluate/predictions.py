"""Prediction files: one JSONL per (data file, settings, method), appended and fsynced per question,
named by a fingerprint of every setting that changes an answer."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from engine.atomic import clean_temp_files, file_digest, file_lock, write_text
from engine.errors import InputError
from engine.evaluate.options import EvalOptions
from engine.methods import AdapterSource, Method, PromptKind

if TYPE_CHECKING:
    from engine.explorer import Explorer

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


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


def fingerprint(explorer: Explorer, options: EvalOptions, translator_path: Path | None) -> dict[str, Any]:
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
            translator = {"path": str(translator_path), "digest": file_digest(Path(translator_path))}
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
        **({"dtype": dtype} if (dtype := explorer.loaded.placement.dtype) != "float32" else {}),  # float32 keys stay as they were
        **({"merge": options.merge} if options.merge != "sum" else {}),
        **({"order": options.order} if options.order != "best-first" else {}),
        **({"lora_span": options.lora_span} if options.lora_span != "all" else {}),  # records of "all" keep their keys
        **({"layers": list(options.layers)} if options.layers is not None else {}),
        **({"rerank": {"mode": options.rerank, "candidates": options.candidates,
                       **({"model": str(options.reranker_model)} if options.reranker_model else {})}}
           if options.rerank != "none" else {}),
    }


def methods_fingerprint(fp: dict[str, Any], methods: Sequence[Method]) -> dict[str, Any]:
    """Only the settings these methods read: a new translator leaves the vanilla, RAG and PRAG predictions valid."""
    sources = {m.adapter for m in methods}
    kept = {**fp, "translator": fp["translator"] if AdapterSource.DYPRAG in sources else None,
            "prag_lora": fp["prag_lora"] if AdapterSource.PRAG in sources else None}
    unread = {"merge": AdapterSource.PRAG not in sources, "layers": sources <= {AdapterSource.NONE},
              "order": all(m.prompt is not PromptKind.PASSAGES for m in methods),
              "lora_span": not any(m.prompt is PromptKind.PASSAGES and m.adapter is not AdapterSource.NONE for m in methods)}
    return {k: v for k, v in kept.items() if not unread.get(k, False)}


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


def content_of(fp: dict[str, Any]) -> dict[str, Any]:
    """Contents, not paths: the same corpus or translator reached by another path resumes the same files."""
    corpus, translator = fp.get("corpus"), fp.get("translator")
    return {**fp, "corpus": corpus and corpus["digest"], "translator": translator and translator["digest"]}


def file_prefix(data: Path, fp: dict[str, Any]) -> str:
    """`<data stem>__<model>__k<k>__n<new tokens>__<given|corpus-NAME>__<tr-none|tr-NAME>__<hash>`."""
    corpus = "given" if fp["corpus"] is None else f"corpus-{_segment(Path(fp['corpus']['path']).stem, 24)}"
    tr = fp["translator"]
    translator = "tr-none" if tr is None else f"tr-{_segment(Path(tr['path']).stem, 24) if tr['path'] else 'loaded'}"
    digest = hashlib.sha256(json.dumps(content_of(fp), sort_keys=True).encode()).hexdigest()[:8]
    return "__".join([_segment(data.stem), _segment(fp["model"]), f"k{fp['top_k']}", f"n{fp['max_new_tokens']}",
                      corpus, translator, digest])
