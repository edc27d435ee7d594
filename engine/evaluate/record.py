"""Results anyone can check: one JSONL file per evaluation with every method's answer to every
question, and the table recomputed from it in seconds (`prag eval --record` / `--rescore`).

Line 1 is a header (data file, model, device and dtype, the settings fingerprint that keyed the
prediction files, the command); every other line is one (question id, method) answer: the
prediction, its probes, latency, tokens and passage ids. No question or gold answer is copied
into it (data sets stay where they are): rescoring reads them from the data file again, so it
needs the data but not the model. The translator's sidecar gets the table too, so a shipped
translator says what it scored. `--reuse` copies a record's answers back into a run whose settings
they share, so a new translator re-runs DyPRAG only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.atomic import write_text
from engine.errors import ArtifactError, InputError
from engine.evaluate.paired import question_groups
from engine.evaluate.predictions import PredictionFile, content_of, methods_fingerprint
from engine.evaluate.results import EvalResult, summarize
from engine.methods import METHODS
from engine.qa import QAItem, load_qa

if TYPE_CHECKING:
    from engine.evaluate.coverage import CoverageRow

RECORD_FORMAT = "prag-explorer-eval-record/1"


def write_record(path: Path, result: EvalResult, items: Sequence[QAItem], command: str, data: Path) -> int:
    """Write the record of `result` (its prediction files, in question order); returns the answers written."""
    lines: list[dict[str, Any]] = [{
        "format": RECORD_FORMAT, "data": result.data.name, "data_path": str(data), "n": result.n, "model": result.model,
        "placement": result.placement, "top_k": result.top_k, "max_new_tokens": result.max_new_tokens,
        "methods": list(result.methods), "settings": result.settings, "command": command,
    }]
    for name, prediction_path in result.predictions.items():
        stored = PredictionFile(prediction_path, name)
        stored.load()
        for item in items:
            row = stored.records.get(item.id)
            if row is not None:
                lines.append({k: v for k, v in row.items() if k != "answers"})
    write_text(Path(path), "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
    return len(lines) - 1


def read_record(path: Path, data: Path | None = None) -> tuple[dict[str, Any], list[QAItem], dict[str, dict[str, dict[str, Any]]]]:
    """(header, the data file's items the record answered, records[method][id]); one line for each way it can fail."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ArtifactError(f"record {path} does not exist", "write one with `prag eval ... --record PATH`")
    try:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"record {path} is not valid JSONL ({exc})", "write it again with `prag eval ... --record PATH`") from None
    if not rows or not isinstance(rows[0], dict) or rows[0].get("format") != RECORD_FORMAT:
        raise ArtifactError(f"{path} is not a prag-explorer evaluation record", "write one with `prag eval ... --record PATH`")
    header, answers = rows[0], rows[1:]
    unknown = [m for m in header.get("methods", []) if m not in METHODS]
    if unknown:
        raise ArtifactError(f"record {path} has unknown methods {unknown}", "it was written by another version of prag-explorer")
    source = Path(data) if data is not None else Path(header.get("data_path", header.get("data", "")))
    if not source.is_file():
        raise InputError(f"the record's data file {source} is not here", "pass it with --data (the record keeps no gold answers)")
    wanted = {row["id"] for row in answers}
    items = [item for item in load_qa(source) if item.id in wanted]
    if len(items) < len(wanted):
        raise InputError(f"{source} lacks {len(wanted) - len(items)} of the record's {len(wanted)} question ids",
                         "pass the data file the record was made from with --data")
    records: dict[str, dict[str, dict[str, Any]]] = {}
    for row in answers:
        records.setdefault(row["method"], {})[row["id"]] = row
    return header, items, records


def rescore(path: Path, data: Path | None = None) -> EvalResult:
    """The table of a record file, recomputed from its answers against the data file's gold and conflict answers."""
    return _table(*read_record(path, data))


def rescore_with_coverage(path: Path, data: Path | None = None) -> tuple[EvalResult, tuple[str, list[CoverageRow]]]:
    """The table, and (the record's PRAG store key, per-method F1 split by whether the PRAG LoRAs trained on the
    answer), from one reading of the record."""
    from engine.evaluate.coverage import coverage_of

    header, items, records = read_record(path, data)
    result = _table(header, items, records)
    return result, coverage_of(items, records, result.settings, result.methods)


def _table(header: dict[str, Any], items: list[QAItem], records: dict[str, dict[str, dict[str, Any]]]) -> EvalResult:
    methods = [METHODS[name] for name in header["methods"]]
    return EvalResult(data=Path(header["data"]), n=len(items), methods=summarize(items, methods, records),
                      predictions={}, model=header.get("model", ""), top_k=header.get("top_k", 0),
                      max_new_tokens=header.get("max_new_tokens", 0), placement=header.get("placement", ""),
                      settings=header.get("settings", {}), groups=question_groups(items))


def record_in_sidecar(translator: Path, result: EvalResult, record: Path, command: str) -> bool:
    """Add this evaluation's table to the translator's sidecar (ours only); False when there is none to write to."""
    from engine.translator import sidecar_path

    side = sidecar_path(Path(translator))
    if Path(translator).suffix != ".safetensors" or not side.is_file():
        return False
    meta = json.loads(side.read_text(encoding="utf-8"))
    meta.setdefault("evaluation", {})[result.data.stem] = {
        "n": result.n, "top_k": result.top_k, "max_new_tokens": result.max_new_tokens, "placement": result.placement,
        "methods": {name: scores.to_json() for name, scores in result.methods.items()},
        "predictions": record.name, "command": command,
    }
    write_text(side, json.dumps(meta, indent=2) + "\n")
    return True


def reuse_record(path: Path, data: Path, fp: dict[str, Any], files: dict[str, PredictionFile], items: Sequence[QAItem]) -> int:
    """Copy into this run's prediction files the record's answers of every method whose settings (those it reads)
    are this run's: after a new translator only DyPRAG runs again, vanilla, RAG and PRAG come from the record.
    Returns the answers copied; a record of other data, or one that shares no method's settings, is one line."""
    header, _, records = read_record(path, data)
    if header.get("data") != Path(data).name:
        raise InputError(f"record {path} answers {header.get('data')}, not {Path(data).name}", "pass a record of the same --data")
    settings = header.get("settings", {})
    shared = [name for name in files if name in records and
              content_of(methods_fingerprint(settings, [METHODS[name]])) == content_of(methods_fingerprint(fp, [METHODS[name]]))]
    if not shared:
        ours, theirs = content_of(fp), content_of(settings)
        differ = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k)) or ["methods"]
        raise InputError(f"record {path} shares no method's settings with this run (they differ in {', '.join(differ)})",
                         "drop --reuse, or run with the settings of the record's command")
    wanted = {item.id: item for item in items}
    copied = 0
    for name in shared:
        stored = files[name]
        for question_id, row in records[name].items():
            if question_id in wanted and question_id not in stored.records and row.get("error") is None:
                stored.append({**row, "answers": list(wanted[question_id].answers)})
                copied += 1
    return copied
