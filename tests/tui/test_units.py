"""Plain logic behind the explorer: export files, scores, the stream buffer, the CLI command."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime

from typer.testing import CliRunner

from engine.corpus import make_passage
from engine.explorer import Answer, AnswerUpdate, Comparison
from engine.methods import AdapterSource
from engine.qa import Conflict, QAItem
from engine.retrieval import Hit
from tests.tui.fake_engine import fake_norms
from tui.export import export_comparison, slug, to_markdown
from tui.scoring import follows, score
from tui.series import adapter_norm_series, layer_totals
from tui.session import StreamBuffer


def comparison() -> Comparison:
    passage = make_passage("The Eiffel Tower rises beside the Tiber in Rome.", "Eiffel Tower")
    answers = [
        Answer("vanilla", "Vanilla", "Paris", 2, 0.31, status="done"),
        Answer("rag", "RAG", "Rome | Italy", 3, 0.33, status="done"),
        Answer("prag", "PRAG", "", 0, 0.0, error="no PRAG LoRA for 1 of 1 passages", status="error"),
        Answer("dyprag", "DyPRAG", "Ro", 1, 0.2, norms=fake_norms(AdapterSource.DYPRAG), status="cancelled"),
    ]
    return Comparison("In which city does the Eiffel Tower stand?", "m", [Hit(passage, 4.2, 1, ("eiffel", "tower"))], answers, 0.5)


ITEM = QAItem("sq-049", "In which city does the Eiffel Tower stand?", ("Rome",), conflict=Conflict(("Paris",), ("Rome",)))


def test_export_writes_both_files_without_clobbering(tmp_path):
    now = datetime(2025, 1, 2, 3, 4, 5)
    first = export_comparison(comparison(), ITEM, tmp_path, ["Some title"], now)
    second = export_comparison(comparison(), ITEM, tmp_path, [], now)
    assert first[0].name == "20250102-030405-in-which-city-does-the-eiffel-tower.md"
    assert second[0].name.endswith("-2.md") and second[1].name.endswith("-2.json")
    data = json.loads(first[1].read_text())
    assert data["scores"] == {"vanilla": {"em": 0.0, "f1": 0.0, "follows": "memory"},
                              "rag": {"em": 0.0, "f1": 0.6667, "follows": "passage"}}
    assert data["excluded_passages"] == ["Some title"] and data["conflict"]["original_answers"] == ["Paris"]
    text = first[0].read_text()
    assert "| RAG | done | Rome \\| Italy |" in text  # pipes escaped inside table cells
    assert "| PRAG | error | error: no PRAG LoRA for 1 of 1 passages |" in text
    assert "| off | - | Some title |" in text
    assert "| Layer | DyPRAG |" in text


def test_markdown_without_qa_item_has_no_scores():
    text = to_markdown(comparison(), None, [], "now")
    assert "Gold" not in text and "| Vanilla | done | Paris | 2 | 0.31 s | - | - | - |" in text
    assert slug("  ?? ") == "question"


def test_scores_and_conflict_sides():
    assert score("The Saffron yellow.", ["saffron yellow", "saffron"]).em == 1.0
    assert score("yellow", ["saffron yellow"]).f1 == 2 / 3
    conflict = Conflict(("Paris",), ("Rome",))
    assert [follows(a, conflict) for a in ("Rome", "Paris, France", "Rome, not Paris", "London", "")] == [
        "passage", "memory", "both", "neither", "neither",
    ]


def test_norm_series_pick_modules_and_share_adapters():
    norms = fake_norms(AdapterSource.PRAG)
    assert layer_totals(norms, "gate_proj")[0] == norms[0]["gate_proj"]
    row = norms[3]
    assert abs(layer_totals(norms)[3] - (row["gate_proj"] ** 2 + row["up_proj"] ** 2 + row["down_proj"] ** 2) ** 0.5) < 1e-12
    answers = [Answer("prag", "PRAG", norms=norms), Answer("prag_combine", "PRAG-combine", norms=fake_norms(AdapterSource.DYPRAG)),
               Answer("rag", "RAG")]
    assert list(adapter_norm_series(answers)) == ["PRAG"]  # the combine variant injects the same adapter


def test_stream_buffer_keeps_the_latest_snapshot_and_drops_old_runs():
    buffer = StreamBuffer()
    buffer.start(2)
    buffer.put(1, AnswerUpdate(0, Answer("rag", "RAG", "stale")))
    buffer.put(2, AnswerUpdate(0, Answer("rag", "RAG", "a")))
    buffer.put(2, AnswerUpdate(0, Answer("rag", "RAG", "ab")))
    buffer.put(2, AnswerUpdate(1, Answer("prag", "PRAG", "x")))
    drained = buffer.drain()
    assert {i: a.text for i, a in drained.items()} == {0: "ab", 1: "x"}
    assert buffer.drain() == {}


def test_cli_rejects_a_missing_corpus_with_one_line_and_exit_2(tmp_path):
    from engine.cli.app import app

    result = CliRunner().invoke(app, ["tui", "--corpus", str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 2
    assert "corpus" in result.output and "does not exist" in result.output and "Traceback" not in result.output


def test_cli_stays_free_of_textual_until_the_tui_runs():
    code = ("import sys, engine.cli.app; assert 'textual' not in sys.modules and 'tui' not in sys.modules, "
            "sorted(m for m in sys.modules if m.startswith(('textual', 'tui')))")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_encodes_missing_prag_loras_unless_told_not_to(monkeypatch):
    from engine.cli.app import app
    from tui.app import PragApp

    seen: list[bool] = []
    monkeypatch.setattr(PragApp, "run", lambda self: seen.append(self.start_options.encode_missing))
    for args in (["tui"], ["tui", "--no-encode"], ["tui", "--encode"]):
        assert CliRunner().invoke(app, args).exit_code == 0
    assert seen == [True, False, True]
