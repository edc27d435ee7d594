"""Write the comparison on screen to Markdown (for notes and issues) and JSON (for scripts).

Files go to `<PRAG_HOME>/exports/` unless `prag tui --export-dir` says otherwise, named
`<timestamp>-<question slug>.md` and `.json`. Both are written atomically.

A run with dynamic reranking carries a `rerank` block in `Comparison.extra`
(`tui.reranking.rerank_block`): the JSON has it as is, the Markdown adds a Rerank
section with the reranker's reply and every candidate's new and BM25 rank.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.atomic import write_text
from tui.scoring import follows, score
from tui.series import adapter_norm_series

if TYPE_CHECKING:
    from engine.config import Settings
    from engine.explorer import Comparison
    from engine.qa import QAItem

_SLUG = re.compile(r"[^a-z0-9]+")


def default_export_dir(settings: Settings) -> Path:
    return settings.home / "exports"


def slug(question: str, limit: int = 40) -> str:
    """File-name-safe start of the question, cut at a word boundary."""
    words = _SLUG.sub("-", question.lower()).strip("-")
    if len(words) > limit:
        cut = words[:limit]
        words = cut[: cut.rfind("-")] if words[limit] != "-" and "-" in cut else cut
    return words.strip("-") or "question"


def answer_scores(comparison: Comparison, item: QAItem | None) -> dict[str, dict[str, Any]]:
    """EM/F1 (when gold answers are known) and conflict side, per finished answer."""
    result: dict[str, dict[str, Any]] = {}
    if item is None:
        return result
    for answer in comparison.answers:
        if answer.status != "done" or answer.error:
            continue
        s = score(answer.text, item.answers)
        entry: dict[str, Any] = {"em": s.em, "f1": round(s.f1, 4)}
        if item.conflict is not None:
            entry["follows"] = follows(answer.text, item.conflict)
        result[answer.method] = entry
    return result


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|") or " "


def to_markdown(comparison: Comparison, item: QAItem | None, excluded: list[str], stamp: str) -> str:
    scores = answer_scores(comparison, item)
    lines = [
        "# prag-explorer comparison",
        "",
        f"- **Question:** {_cell(comparison.question)}",
        f"- **Model:** {comparison.model}",
        f"- **Wall time:** {comparison.wall_s:.2f} s",
        f"- **Exported:** {stamp}",
    ]
    if item is not None:
        lines.append(f"- **Gold ({item.id}):** {' · '.join(item.answers)}")
        if item.conflict is not None:
            lines.append(f"- **Memory (original):** {' · '.join(item.conflict.original_answers)}")
            lines.append(f"- **Passage (substituted):** {' · '.join(item.conflict.substituted_answers)}")
    lines += ["", "## Passages", "", "| # | BM25 | Title | Text |", "|---:|---:|---|---|"]
    for hit in comparison.hits:
        lines.append(f"| {hit.rank} | {hit.score:.2f} | {_cell(hit.passage.title)} | {_cell(hit.passage.text)} |")
    if not comparison.hits:
        lines.append("| - | - | - | no passage was used |")
    for title in excluded:
        lines.append(f"| off | - | {_cell(title)} | (switched off for this run) |")
    rerank = comparison.extra.get("rerank")
    if rerank:
        lines += _rerank_markdown(rerank)
    lines += [
        "",
        "## Answers",
        "",
        "| Method | Status | Answer | Tokens | Latency | EM | F1 | Follows |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for answer in comparison.answers:
        s = scores.get(answer.method, {})
        text = f"error: {answer.error}" if answer.error else answer.text
        em = f"{s['em']:.0f}" if "em" in s else "-"
        f1 = f"{s['f1']:.2f}" if "f1" in s else "-"
        lines.append(
            f"| {answer.label} | {answer.status} | {_cell(text)} | {answer.tokens} | {answer.latency_s:.2f} s "
            f"| {em} | {f1} | {s.get('follows', '-')} |"
        )
    series = adapter_norm_series(comparison.answers)
    if series:
        names = list(series)
        lines += ["", "## Per-layer LoRA norms (gate, up and down together)", ""]
        lines.append("| Layer | " + " | ".join(names) + " |")
        lines.append("|---:|" + "---:|" * len(names))
        for layer in range(max(len(v) for v in series.values())):
            values = [f"{series[n][layer]:.4g}" if layer < len(series[n]) else "-" for n in names]
            lines.append(f"| {layer} | " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


def _rerank_markdown(rerank: dict[str, Any]) -> list[str]:
    outcome = f"**fell back to BM25 order**: {rerank['note']}" if rerank.get("fallback") else rerank.get("note", "")
    reply = " ".join(str(rerank.get("raw", "")).split()).replace("`", "'")  # one line, inside a code span
    lines = [
        "",
        "## Rerank (dynamic)",
        "",
        f"- **Outcome:** {outcome}",
        f"- **Candidates asked for:** {rerank.get('candidates', '-')}",
        "- **Reranker reply:** " + (f"`{reply}`" if reply else "(empty)"),
    ]
    if rerank.get("reused"):
        lines.append("- **Note:** a re-run of the same question: the earlier rerank was kept, with the switches above")
    elif rerank.get("seconds") is not None:
        lines.append(f"- **Retrieval and rerank time:** {rerank['seconds']:.2f} s")
    lines += ["", "| Rank | BM25 | Title | Reranker |", "|---:|---:|---|---|"]
    for row in rerank.get("positions", []):
        rank = row["rank"] if row["rank"] is not None else "-"
        lines.append(f"| {rank} | {row['bm25_rank']} | {_cell(row['title'])} | {'kept' if row['kept'] else 'dropped'} |")
    return lines


def to_json(comparison: Comparison, item: QAItem | None, excluded: list[str], stamp: str) -> dict[str, Any]:
    data = comparison.to_json()
    data["wall_s"] = round(comparison.wall_s, 4)
    data["exported_at"] = stamp
    data["excluded_passages"] = excluded
    if item is not None:
        data["qa_id"] = item.id
        data["gold"] = list(item.answers)
        if item.conflict is not None:
            data["conflict"] = {
                "original_answers": list(item.conflict.original_answers),
                "substituted_answers": list(item.conflict.substituted_answers),
            }
        data["scores"] = answer_scores(comparison, item)
    return data


def export_comparison(
    comparison: Comparison, item: QAItem | None, folder: Path, excluded: list[str] | None = None, now: datetime | None = None
) -> tuple[Path, Path]:
    """Write `<stamp>-<slug>.md` and `.json` into `folder`; returns both paths."""
    now = now or datetime.now()
    stamp = now.isoformat(timespec="seconds")
    base = f"{now:%Y%m%d-%H%M%S}-{slug(comparison.question)}"
    folder = Path(folder).expanduser()
    md, js = folder / f"{base}.md", folder / f"{base}.json"
    counter = 2
    while md.exists() or js.exists():
        md, js = folder / f"{base}-{counter}.md", folder / f"{base}-{counter}.json"
        counter += 1
    excluded = excluded or []
    write_text(md, to_markdown(comparison, item, excluded, stamp))
    write_text(js, json.dumps(to_json(comparison, item, excluded, stamp), ensure_ascii=False, indent=2) + "\n")
    return md, js
